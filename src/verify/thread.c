/* Per-thread verifier state (the stack of driver routines the runtime called on this thread),
 * the interned routine contexts recorded with every IRP history step, and the per-IRP shadow
 * state. */
#include <stdio.h>
#include <string.h>

#include "verify/verify.h"

/* ---- per-thread frames */

static void vrf_thread_exit(plat_thread *t)
{
    vrf_thread *v = t->ext[PLAT_EXT_VERIFY];
    t->ext[PLAT_EXT_VERIFY] = NULL;
    /* A thread that ends inside a routine (pthread_exit natively) has returned from it for the
     * stall check. Not in explore mode: an abandoned fiber's devices went with its execution. */
    for (int i = v && !vrf_exploring() ? v->depth - 1 : -1; i >= 0; i--)
        if (v->frames[i].finishing) vrf_finishing_end(&v->frames[i]);
    plat_free(v);
}

vrf_thread *vrf_self(void)
{
    plat_thread *t = plat_self();
    vrf_thread *v = t->ext[PLAT_EXT_VERIFY];
    if (v) return v;
    v = plat_calloc(1, sizeof *v);
    if (!v) plat_panic("out of memory for per-thread verifier state");
    t->ext[PLAT_EXT_VERIFY] = v;
    plat_on_thread_exit(vrf_thread_exit);
    return v;
}

/* The last few (kind, routine) → context lookups of this thread: most pushes repeat one. */
static int32_t cached_ctx(vrf_thread *v, uint8_t kind, const void *routine)
{
    for (int i = 0; i < VRF_CTX_CACHE; i++)
        if (v->cache_routine[i] == routine && v->cache_kind[i] == kind) return v->cache_ctx[i];
    int i = v->cache_next++ % VRF_CTX_CACHE;
    v->cache_routine[i] = routine;
    v->cache_kind[i] = kind;
    return v->cache_ctx[i] = vrf_ctx_intern(kind, routine);
}

int vrf_push(uint8_t kind, const void *routine, PDEVICE_OBJECT dev, PIRP irp)
{
    plat_thread *t = plat_self();
    vrf_thread *v = t->ext[PLAT_EXT_VERIFY] ? t->ext[PLAT_EXT_VERIFY] : vrf_self();
    ke_thread *k = t->ext[PLAT_EXT_KE] ? t->ext[PLAT_EXT_KE] : ke_self();
    if (v->depth >= VRF_FRAMES) {
        v->overflow++;
        return -2;
    }
    vrf_frame *f = &v->frames[v->depth];
    *f = (vrf_frame){.kind = kind, .irql = t->irql, .n_held = k->n_held,
                     .ctx = cached_ctx(v, kind, routine), .routine = routine, .dev = dev, .irp = irp};
    return v->depth++;
}

vrf_frame *vrf_frame_at(int index)
{
    vrf_thread *v = plat_self()->ext[PLAT_EXT_VERIFY];
    return v && index >= 0 && index < v->depth ? &v->frames[index] : NULL;
}

void vrf_pop(int index)
{
    vrf_thread *v = plat_self()->ext[PLAT_EXT_VERIFY];
    if (!v) return;
    if (index == -2) {
        if (v->overflow > 0) v->overflow--;
        return;
    }
    /* Frames are strictly nested (the runtime pushes and pops around each call), so index is
     * the innermost one; anything above it would be a runtime bug. */
    if (index < 0 || index >= v->depth) return;
    for (int i = v->depth - 1; i >= index; i--)
        if (v->frames[i].finishing) vrf_finishing_end(&v->frames[i]);
    v->depth = index;
}

vrf_frame *vrf_find_frame(PIRP irp, uint8_t kind)
{
    vrf_thread *v = plat_self()->ext[PLAT_EXT_VERIFY];
    if (!v) return NULL;
    for (int i = v->depth - 1; i >= 0; i--)
        if (v->frames[i].irp == irp && (kind == VRF_IN_NONE || v->frames[i].kind == kind))
            return &v->frames[i];
    return NULL;
}

/* ---- routine contexts
 * A context word: bits 28-30 routine kind, 16-27 index of the routine in `routines`, 0-15 the
 * history step it belongs to (io_irp_step stores it next to the step). Slots are claimed with
 * a compare-exchange and never released, so readers need no lock. */

#define N_ROUTINES 4096

/* Routines are code addresses, valid for the whole process: the table is never reset (not
 * even between explorer executions). */
static const void *volatile routines[N_ROUTINES];
static int32_t routine_kinds[N_ROUTINES];
static void ctx_reset(void)
{
    memset((void *)routines, 0, sizeof routines);
    memset(routine_kinds, 0, sizeof routine_kinds);
}
__attribute__((constructor)) static void ctx_register_reset(void) { plat_on_reset(ctx_reset); }

int32_t vrf_ctx_intern(uint8_t kind, const void *routine)
{
    if (!routine) return (int32_t)kind << 28;
    uint32_t h = (uint32_t)(((uintptr_t)routine >> 4) * 2654435761u) ^ kind;
    for (uint32_t probe = 0; probe < 64; probe++) {
        uint32_t i = 1 + (h + probe) % (N_ROUTINES - 1); /* slot 0 means "none" */
        const void *cur = vrf_load_ptr((void *const volatile *)&routines[i]);
        if (cur == routine && vrf_load32(&routine_kinds[i]) == kind) return (int32_t)(kind << 28 | i << 16);
        if (cur) continue;
        /* The kind is written before the pointer is published; a racing reader that sees the
         * pointer sees the kind (both are sequentially consistent). */
        vrf_store32(&routine_kinds[i], kind);
        const void *won = vrf_cas_ptr((void *volatile *)&routines[i], NULL, (void *)routine);
        if (!won) return (int32_t)(kind << 28 | i << 16);
        if (won == routine && vrf_load32(&routine_kinds[i]) == kind) return (int32_t)(kind << 28 | i << 16);
    }
    return (int32_t)kind << 28; /* table crowded: keep the kind only */
}

const char *vrf_kind_name(uint8_t kind)
{
    static const char *const n[] = {"", "dispatch", "StartIo", "cancel routine", "completion routine", "DPC"};
    return kind < sizeof n / sizeof n[0] ? n[kind] : "?";
}

const char *vrf_ctx_describe(int32_t ctx, char *buf, size_t n)
{
    uint8_t kind = (uint8_t)((uint32_t)ctx >> 28 & 7);
    uint32_t i = (uint32_t)ctx >> 16 & 0xFFF;
    buf[0] = 0;
    if (!kind) return buf;
    const void *routine = i ? vrf_load_ptr((void *const volatile *)&routines[i]) : NULL;
    char sym[64] = "";
    if (routine) vrf_symbol(routine, sym, sizeof sym);
    snprintf(buf, n, "%s%s%s", vrf_kind_name(kind), sym[0] ? " " : "", sym);
    return buf;
}

void vrf_step_context(plat_thread *t, struct io_irp_priv *p, int32_t i)
{
    vrf_thread *v = t->ext[PLAT_EXT_VERIFY];
    int32_t ctx = v->depth > 0 && v->depth <= VRF_FRAMES ? v->frames[v->depth - 1].ctx : 0;
    vrf_store32(&p->hist_ctx[i % IO_HISTORY_LEN], (int32_t)(((uint32_t)ctx & 0xFFFF0000u) | ((uint32_t)i & 0xFFFFu)));
}

/* ---- per-IRP shadow state */

void vrf_irp_set_state(PIRP irp, int32_t state)
{
    volatile int32_t *w = &io_priv(irp)->vrf;
    /* Compare-exchange: flags (VRF_WATCHED, …) may be set concurrently by other threads. */
    for (int32_t old = vrf_load32(w);;) {
        int32_t seen = vrf_cas32(w, old, (old & ~VRF_STATE_MASK) | state);
        if (seen == old) return;
        old = seen;
    }
}

const char *vrf_irp_state_name(PIRP irp)
{
    static const char *const n[] = {"allocated", "dispatched", "queued (IoStartPacket)", "in StartIo",
                                    "completed (IoCompleteRequest called)", "completed", "freed"};
    int32_t s = vrf_load32(&io_priv(irp)->vrf) & VRF_STATE_MASK;
    return s < (int32_t)(sizeof n / sizeof n[0]) ? n[s] : "?";
}

void vrf_irp_hold(PIRP irp) { vrf_add32(&io_priv(irp)->refs, 1); }

void vrf_irp_drop(PIRP irp)
{
    if (vrf_add32(&io_priv(irp)->refs, -1) == 1) io_irp_release(irp);
}
