/* event_timer — requests that pend until their own timer fires (see driver.c). Shared by the
 * driver, its tests and its user-mode program. */
#ifndef EVENT_TIMER_H
#define EVENT_TIMER_H

#include <ntddk.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EVENT_TIMER_DEVICE_NAME L"\\Device\\EventTimer"
#define EVENT_TIMER_LINK_NAME L"\\??\\EventTimer"
#define EVENT_TIMER_TAG 0x524D5445 /* "ETMR" */

/* IRP_MJ_DEVICE_CONTROL, METHOD_BUFFERED, input EVENT_TIMER_WAIT_INPUT: completes with
 * STATUS_SUCCESS when DueMs milliseconds have passed (after setting Event, when given), or
 * STATUS_CANCELLED when cancelled or its handle is cleaned up first. Event must be a handle to
 * an event object with EVENT_MODIFY_STATE access (else STATUS_INVALID_HANDLE,
 * STATUS_OBJECT_TYPE_MISMATCH or STATUS_ACCESS_DENIED, at once). */
#define IOCTL_EVENT_TIMER_WAIT CTL_CODE(FILE_DEVICE_UNKNOWN, 0x821, METHOD_BUFFERED, FILE_ANY_ACCESS)

typedef struct _EVENT_TIMER_WAIT_INPUT {
    ULONG DueMs;
    ULONG Reserved;
    HANDLE Event; /* optional */
} EVENT_TIMER_WAIT_INPUT;

/* IRP_MJ_DEVICE_CONTROL, METHOD_BUFFERED, output EVENT_TIMER_STATS. */
#define IOCTL_EVENT_TIMER_STATS CTL_CODE(FILE_DEVICE_UNKNOWN, 0x822, METHOD_BUFFERED, FILE_ANY_ACCESS)

typedef struct _EVENT_TIMER_STATS {
    LONG Armed;            /* timers set (one per pending request) */
    LONG EarlyCancelled;   /* cancelled before the timer was set (Irp->Cancel at dispatch) */
    LONG TimerCompleted;   /* completed by the timer DPC: STATUS_SUCCESS */
    LONG CancelCompleted;  /* completed by the cancel routine */
    LONG CleanupCompleted; /* completed by cleanup */
    LONG DpcLost;          /* timer DPCs that found their request already taken */
    LONG TimersCancelled;  /* KeCancelTimer returned TRUE: that DPC never ran */
    LONG EventsSignalled;  /* user events set by the timer DPC */
    LONG Live;             /* request contexts not yet freed */
} EVENT_TIMER_STATS;

DRIVER_INITIALIZE EventTimerDriverEntry;

#ifdef __cplusplus
}
#endif

#endif
