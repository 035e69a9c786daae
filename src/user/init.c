/* The user-mode layer's start-up, configuration, statistics and timeline helpers. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "trace/trace.h"
#include "user/user.h"
#include "verify/verify.h"

/* ---- configuration: atomics, so tests may change it while threads run */

static volatile int64_t cfg_exit_poll_ms = 100;
static volatile int64_t cfg_exit_timeout_ms = 10000;
static volatile int64_t cfg_cancel_poll_ms = 10;
static volatile int64_t cfg_hang_report_ms = 10000;

int64_t user_cfg_exit_poll_ms(void) { return plat_load64(&cfg_exit_poll_ms); }
int64_t user_cfg_exit_timeout_ms(void) { return plat_load64(&cfg_exit_timeout_ms); }
int64_t user_cfg_cancel_poll_ms(void) { return plat_load64(&cfg_cancel_poll_ms); }
int64_t user_cfg_hang_report_ms(void) { return plat_load64(&cfg_hang_report_ms); }

/* Bookkeeping store: start-up must add no scheduling point (see user_init_once). */
static void env_ms(const char *name, volatile int64_t *cell, bool zero_ok)
{
    const char *s = getenv(name);
    if (!s || !*s) return;
    long v = strtol(s, NULL, 10);
    if (v > 0 || (zero_ok && v == 0)) plat_bk_store64(cell, v);
}

void irpk_user_get_config(irpk_user_config *out)
{
    out->thread_exit_poll_ms = (long)user_cfg_exit_poll_ms();
    out->thread_exit_timeout_ms = (long)user_cfg_exit_timeout_ms();
    out->cancel_poll_ms = (long)user_cfg_cancel_poll_ms();
    out->cancel_hang_report_ms = (long)user_cfg_hang_report_ms();
}

void irpk_user_set_config(const irpk_user_config *c)
{
    if (c->thread_exit_poll_ms > 0) plat_store64(&cfg_exit_poll_ms, c->thread_exit_poll_ms);
    if (c->thread_exit_timeout_ms > 0) plat_store64(&cfg_exit_timeout_ms, c->thread_exit_timeout_ms);
    if (c->cancel_poll_ms > 0) plat_store64(&cfg_cancel_poll_ms, c->cancel_poll_ms);
    if (c->cancel_hang_report_ms >= 0) plat_store64(&cfg_hang_report_ms, c->cancel_hang_report_ms);
}

/* ---- statistics */

volatile int32_t user_files_live, user_files_closing, user_irps_pending;
volatile int32_t user_disassociated, user_dropped;

void irpk_user_get_stats(irpk_user_stats *out)
{
    out->files_live = plat_load32(&user_files_live);
    out->files_closing = plat_load32(&user_files_closing);
    out->irps_pending = plat_load32(&user_irps_pending);
    out->disassociated = plat_load32(&user_disassociated);
    out->dropped = plat_load32(&user_dropped);
}

/* ---- start-up
 *
 * The first service call initialises the layer. Under the explorer that first call may come
 * from inside an execution, and an execution must run the same steps however often it is
 * repeated (a replay compares trace hashes step by step): so start-up adds no scheduling point
 * — the state word and the configuration use bookkeeping atomics, the exit-hook registration
 * and the per-thread state of ke, io and the verifier are point-free, and the completion
 * hand-off is installed by the reset below (before every execution, outside any simulated
 * thread) as well as here. */

static volatile int32_t init_state;        /* 0 not started, 1 in progress, 2 done */
static volatile int32_t handoff_installed; /* io's completion hand-off points at ours */

static void install_handoff(void)
{
    io_set_completion_handoff(user_handoff);
    plat_bk_store32(&handoff_installed, 1);
}

static void user_init(void)
{
    env_ms("IRPK_THREAD_EXIT_POLL_MS", &cfg_exit_poll_ms, false);
    env_ms("IRPK_THREAD_EXIT_TIMEOUT_MS", &cfg_exit_timeout_ms, false);
    env_ms("IRPK_CANCEL_POLL_MS", &cfg_cancel_poll_ms, false);
    env_ms("IRPK_CANCEL_HANG_MS", &cfg_hang_report_ms, true);
    /* Exit hooks run newest-registered first, and ours cancels IRPs — which runs driver code
     * that needs the ke, io and verifier per-thread state. Making those layers register their
     * hooks now (each registers once, process-wide, on its first per-thread use) puts ours
     * after them, so it runs before any of them frees its state; ps registered first of all. */
    (void)ke_self();
    (void)io_self();
    (void)vrf_self();
    plat_on_thread_exit(user_thread_exit);
    if (!plat_bk_load32(&handoff_installed)) install_handoff();
}

void user_init_once(void)
{
    if (plat_bk_load32(&init_state) == 2) return;
    if (plat_bk_cas32(&init_state, 0, 1) == 0) {
        user_init();
        plat_bk_store32(&init_state, 2);
        return;
    }
    while (plat_bk_load32(&init_state) != 2) plat_yield(); /* another thread is initialising */
}

/* ---- per-execution reset (plat_on_reset)
 *
 * The explorer runs every function registered with plat_on_reset before each execution (after
 * releasing the previous execution's memory) and once more when the exploration ends; native
 * code may call plat_reset_all() for a fresh runtime. This layer's process-wide state is: the
 * statistics below, the list of threads that issued I/O with its lock (cancel.c), the
 * completion lock (complete.c), and the I/O worker's list, wake word, lock and thread
 * (file.c). Everything else lives in objects (file objects, events, IRPs, ETHREADs) that ob,
 * io and ps allocate with plat_alloc — in explore mode from the execution's arena — and the
 * handle table, which ob resets. What stays across a reset: the configuration (a setting, not
 * state), the start-up above (process-wide hook registrations; never undone) and the
 * hand-off, which the reset installs so that even a first use inside an execution adds no
 * scheduling point. */
static void user_reset(void)
{
    plat_bk_store32(&user_files_live, 0);
    plat_bk_store32(&user_files_closing, 0);
    plat_bk_store32(&user_irps_pending, 0);
    plat_bk_store32(&user_disassociated, 0);
    plat_bk_store32(&user_dropped, 0);
    plat_lock_init(&user_completion_lock);
    user_cancel_reset();
    user_file_reset();
    if (plat_bk_load32(&init_state) == 2 || plat_mode() == PLAT_EXPLORE) install_handoff();
}

__attribute__((constructor)) static void user_register_reset(void) { plat_on_reset(user_reset); }

/* ---- timeline */

void user_trace(int phase, const char *routine, uint32_t irp_id, const char *fmt, ...)
{
    if (!trace_enabled()) return;
    char what[72];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    trace_emit((trace_phase)phase, routine, irp_id, (uint8_t)io_startio_depth(), "%s", what);
}

const char *user_status_name(NTSTATUS st)
{
    switch (st) {
    case STATUS_SUCCESS: return "STATUS_SUCCESS";
    case STATUS_PENDING: return "STATUS_PENDING";
    case STATUS_CANCELLED: return "STATUS_CANCELLED";
    case STATUS_TIMEOUT: return "STATUS_TIMEOUT";
    case STATUS_USER_APC: return "STATUS_USER_APC";
    case STATUS_ALERTED: return "STATUS_ALERTED";
    case STATUS_NOT_FOUND: return "STATUS_NOT_FOUND";
    case STATUS_INVALID_HANDLE: return "STATUS_INVALID_HANDLE";
    case STATUS_ACCESS_DENIED: return "STATUS_ACCESS_DENIED";
    case STATUS_INVALID_DEVICE_REQUEST: return "STATUS_INVALID_DEVICE_REQUEST";
    case STATUS_OBJECT_NAME_NOT_FOUND: return "STATUS_OBJECT_NAME_NOT_FOUND";
    default: return "";
    }
}
