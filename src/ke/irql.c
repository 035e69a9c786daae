/* IRQL (a per-thread value), per-thread ke state, critical regions, bug-check entry points. */
#include "ke/ke.h"

static void ke_thread_exit(plat_thread *t)
{
    ke_thread *k = t->ext[PLAT_EXT_KE];
    t->ext[PLAT_EXT_KE] = NULL;
    plat_free(k);
}

ke_thread *ke_self(void)
{
    plat_thread *t = plat_self();
    ke_thread *k = t->ext[PLAT_EXT_KE];
    if (k) return k;
    k = plat_calloc(1, sizeof *k);
    if (!k) plat_panic("out of memory for per-thread ke state");
    t->ext[PLAT_EXT_KE] = k;
    plat_on_thread_exit(ke_thread_exit);
    return k;
}

void ke_set_irql(KIRQL irql)
{
    plat_thread *t = plat_self();
    if (t->irql == irql) return; /* no change, nothing for the explorer to interleave */
    t->irql = irql;
    plat_point("irql", NULL);
}

KIRQL KeGetCurrentIrql(VOID) { return ke_irql(); }

VOID KeRaiseIrql(KIRQL NewIrql, PKIRQL OldIrql)
{
    KIRQL cur = ke_irql();
    *OldIrql = cur;
    if (NewIrql < cur) {
        ke_bugcheck(IRPK_BUGCHECK_DRIVER_VERIFIER_DETECTED_VIOLATION, 0x30, cur, NewIrql, 0,
                    "KeRaiseIrql to a lower IRQL (current %u, requested %u): the IRQL is left "
                    "unchanged.\nUsual cause: raising with a saved OldIrql; use KeLowerIrql to "
                    "go down.",
                    cur, NewIrql);
        return;
    }
    ke_set_irql(NewIrql);
}

VOID KeLowerIrql(KIRQL NewIrql)
{
    KIRQL cur = ke_irql();
    if (NewIrql > cur) {
        ke_bugcheck(IRPK_BUGCHECK_DRIVER_VERIFIER_DETECTED_VIOLATION, 0x31, cur, NewIrql, 0,
                    "KeLowerIrql to a higher IRQL (current %u, requested %u): the IRQL is left "
                    "unchanged.\nUsual cause: lowering to a value that was never saved by a "
                    "matching raise.",
                    cur, NewIrql);
        return;
    }
    ke_set_irql(NewIrql);
}

KIRQL KeRaiseIrqlToDpcLevel(VOID)
{
    KIRQL old;
    KeRaiseIrql(DISPATCH_LEVEL, &old);
    return old;
}

ULONG KeGetCurrentProcessorNumber(VOID) { return plat_self()->vcpu; }

ULONG KeQueryActiveProcessorCount(PKAFFINITY ActiveProcessors)
{
    unsigned n = plat_vcpus();
    if (ActiveProcessors) *ActiveProcessors = (n >= sizeof(KAFFINITY) * 8) ? ~(KAFFINITY)0 : (((KAFFINITY)1 << n) - 1);
    return n;
}

VOID KeBugCheckEx(ULONG BugCheckCode, ULONG_PTR P1, ULONG_PTR P2, ULONG_PTR P3, ULONG_PTR P4)
{
    ke_bugcheck(BugCheckCode, P1, P2, P3, P4, "KeBugCheckEx called by driver code.");
}

VOID KeBugCheck(ULONG BugCheckCode) { KeBugCheckEx(BugCheckCode, 0, 0, 0, 0); }

VOID KeEnterCriticalRegion(VOID) { ke_self()->critical_region++; }

VOID KeLeaveCriticalRegion(VOID)
{
    ke_thread *k = ke_self();
    if (k->critical_region <= 0) {
        ke_bugcheck(IRPK_BUGCHECK_DRIVER_VERIFIER_DETECTED_VIOLATION, 0x1, 0, 0, 0,
                    "KeLeaveCriticalRegion without a matching KeEnterCriticalRegion.");
        return;
    }
    k->critical_region--;
}

BOOLEAN KeAreApcsDisabled(VOID)
{
    return (BOOLEAN)(ke_self()->critical_region > 0 || ke_irql() >= APC_LEVEL);
}
