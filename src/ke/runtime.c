/* Runtime configuration, shutdown and the compatibility switches. */
#include "irpkit/runtime.h"
#include "ke/ke.h"


static const int compat_defaults[IRPK_COMPAT_COUNT] = {1, 0, 0, 1, 1, 1};
static int32_t compat[IRPK_COMPAT_COUNT] = {1, 0, 0, 1, 1, 1};

int irpk_compat_get(irpk_compat_switch sw)
{
    if ((unsigned)sw >= IRPK_COMPAT_COUNT) return 0;
    /* Atomic: a test may flip a switch while runtime threads read it (under their own locks). */
    return plat_load32(&compat[sw]);
}

int irpk_compat_set(irpk_compat_switch sw, int on)
{
    if ((unsigned)sw >= IRPK_COMPAT_COUNT) return -1;
    return plat_xchg32(&compat[sw], on ? 1 : 0);
}

void irpk_compat_reset(void)
{
    for (int i = 0; i < IRPK_COMPAT_COUNT; i++) plat_store32(&compat[i], compat_defaults[i]);
}

int irpk_runtime_init(const irpk_config *config)
{
    if (ke_dpcs_queued() || ke_timers_set()) return -1;
    if (config && config->vcpus) plat_set_vcpus(config->vcpus);
    return 0;
}

/* Registered with plat_on_quiesce by the DPC and timer code when they start a thread. */
void ke_stop_service_threads(void)
{
    ke_timer_shutdown(); /* first: an expiring timer queues DPCs */
    ke_dpc_shutdown();
}

void irpk_runtime_shutdown(void) { plat_quiesce_all(); }

void ke_shutdown(void) { irpk_runtime_shutdown(); }
