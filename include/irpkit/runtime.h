/* irpkit runtime: configuration, explicit init/shutdown, compatibility switches.
 *
 * The runtime initialises itself on first use; irpk_runtime_init() is only needed to pass a
 * configuration. irpk_runtime_shutdown() stops the runtime-owned threads (DPC, timer) after
 * letting queued work finish; they restart on demand. */
#ifndef IRPKIT_RUNTIME_H
#define IRPKIT_RUNTIME_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct irpk_config {
    unsigned vcpus; /* virtual CPUs = DPC queues/threads; 0 keeps the default (2) */
} irpk_config;

/* Apply a configuration (NULL = defaults). Call before the runtime starts threads; returns 0,
 * or -1 when threads already run (nothing changed). */
int irpk_runtime_init(const irpk_config *config);
/* Stop DPC and timer threads (queued DPCs run first). Safe to call more than once. */
void irpk_runtime_shutdown(void);

/* Compatibility switches of NT_SEMANTICS.md §10, for the behaviours where the WRK, ReactOS and
 * the documentation disagree. Defaults follow the WRK. */
typedef enum irpk_compat_switch {
    IRPK_COMPAT_BYKEY_WRAP_ON_EQUAL = 0,     /* 1: default on (WRK/ReactOS); off = docs */
    IRPK_COMPAT_IFBUSY_WRAP_ON_EQUAL = 1,    /* 2: default off (WRK); on = ReactOS */
    IRPK_COMPAT_DEFERRED_COVERS_STARTPACKET = 2, /* 3: default off (WRK); on = docs */
    IRPK_COMPAT_CSQ_COMPLETE_OUTSIDE_LOCK = 3,   /* 4: default on (WRK) */
    IRPK_COMPAT_CSQ_EX_NT_SUCCESS = 4,       /* 5: default on = NT_SUCCESS (WRK); off = == SUCCESS */
    IRPK_COMPAT_VERIFY_COMPLETE_WITH_CANCEL_ROUTINE = 5, /* 6: default on */
    IRPK_COMPAT_COUNT
} irpk_compat_switch;

/* Current value (0/1) of a switch; unknown switches read 0. */
int irpk_compat_get(irpk_compat_switch sw);
/* Set a switch; returns the previous value, or -1 for an unknown switch. */
int irpk_compat_set(irpk_compat_switch sw, int on);
/* Restore every switch to its default. */
void irpk_compat_reset(void);

#ifdef __cplusplus
}
#endif

#endif
