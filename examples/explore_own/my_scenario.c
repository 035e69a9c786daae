/* The scenario that points the race explorer at my_driver.c: two readers each send a read,
 * a third thread cancels the second read. Built as a shared object; its constructor registers
 * the scenario, and `irpkit explore --load ./libmy_driver_scenario.so my-driver` explores it.
 *
 * Oracles: irpkit's bug checks and verifier (double completion is 0x44), plus this scenario's
 * own end-state check — every IRP completed exactly once. */
#include <ntddk.h>

#include "irpkit/explore.h"
#include "irpkit/thread.h"
#include "my_driver.h"

#ifdef MY_DRIVER_FIXED
#define SCENARIO_NAME "my-driver-fixed"
#define SCENARIO_SUMMARY "examples/explore_own: my_driver.c with the corrected StartIo"
#define SCENARIO_EXPECT IRPK_FAILURE_NONE
#else
#define SCENARIO_NAME "my-driver"
#define SCENARIO_SUMMARY "examples/explore_own: my_driver.c as written (StartIo ignores IoSetCancelRoutine's result)"
#define SCENARIO_EXPECT IRPK_FAILURE_REPORT
#endif

#define NREADS 2

static PDEVICE_OBJECT device;
static PIRP irps[NREADS];
static KEVENT done[NREADS];
static LONG completions[NREADS];

static NTSTATUS count_completion(PDEVICE_OBJECT DeviceObject, PIRP Irp, PVOID Context)
{
    UNREFERENCED_PARAMETER(DeviceObject);
    UNREFERENCED_PARAMETER(Irp);
    LONG i = (LONG)(intptr_t)Context;
    InterlockedIncrement(&completions[i]);
    KeSetEvent(&done[i], IO_NO_INCREMENT, FALSE);
    return STATUS_CONTINUE_COMPLETION; /* let a second completion be seen as one (0x44) */
}

static void reader(void *arg)
{
    intptr_t i = (intptr_t)arg;
    IoCallDriver(device, irps[i]);
    KeWaitForSingleObject(&done[i], Executive, KernelMode, FALSE, NULL);
}

static void canceller(void *arg)
{
    (void)arg;
    IoCancelIrp(irps[NREADS - 1]); /* the IRPs live until the execution ends */
}

static void scenario(void *arg)
{
    (void)arg;
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\Driver\\MyDriver");
    IRPK_EXPLORE_CHECK(NT_SUCCESS(IoCreateDriver(&name, MyDriverEntry)));
    device = MyDeviceObject;
    for (int i = 0; i < NREADS; i++) {
        completions[i] = 0;
        KeInitializeEvent(&done[i], NotificationEvent, FALSE);
        irps[i] = IoAllocateIrp(device->StackSize, FALSE);
        IoGetNextIrpStackLocation(irps[i])->MajorFunction = IRP_MJ_READ;
        IoSetCompletionRoutine(irps[i], count_completion, (PVOID)(intptr_t)i, TRUE, TRUE, TRUE);
    }
    irpk_thread *t[3] = {irpk_thread_start(reader, (void *)0, "reader-1"),
                         irpk_thread_start(reader, (void *)1, "reader-2"),
                         irpk_thread_start(canceller, NULL, "canceller")};
    for (int i = 0; i < 3; i++) irpk_thread_join(t[i]);
    for (int i = 0; i < NREADS; i++)
        if (completions[i] != 1) irpk_explore_fail("read %d completed %d times", i + 1, (int)completions[i]);
}

__attribute__((constructor)) static void register_my_scenario(void)
{
    static const irpk_scenario s = {SCENARIO_NAME, SCENARIO_SUMMARY, scenario, SCENARIO_EXPECT, NULL};
    irpk_explore_register_scenario(&s);
}
