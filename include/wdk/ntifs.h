/* irpkit WDK compatibility face: <ntifs.h> — <ntddk.h> plus the Nt* native system services.
 *
 * The Nt* forms are what a user-mode program calls (ntdll's exports): the caller is treated as
 * user mode, so handle access rights are checked (STATUS_ACCESS_DENIED) and bad pointers give
 * STATUS_ACCESS_VIOLATION instead of a crash. Their Zw* twins (kernel-mode callers) are in
 * <wdm.h> (wdm_zw.h). Any thread may call them; a thread the runtime did not start is
 * registered on first use. Semantics: shared/spec/NT_SEMANTICS.md §6.4 step 5 and §7;
 * docs/user.md describes every service. */
#ifndef IRPK_WDK_NTIFS_H
#define IRPK_WDK_NTIFS_H

#include "ntddk.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A user APC routine queued with NtQueueApcThread. */
typedef VOID(NTAPI *PPS_APC_ROUTINE)(PVOID ApcArgument1, PVOID ApcArgument2, PVOID ApcArgument3);

typedef struct _ACCESS_STATE *PACCESS_STATE;

/* =========================================================================== files */

NTSTATUS NtCreateFile(PHANDLE FileHandle, ACCESS_MASK DesiredAccess, POBJECT_ATTRIBUTES ObjectAttributes,
                      PIO_STATUS_BLOCK IoStatusBlock, PLARGE_INTEGER AllocationSize, ULONG FileAttributes,
                      ULONG ShareAccess, ULONG CreateDisposition, ULONG CreateOptions, PVOID EaBuffer,
                      ULONG EaLength);
NTSTATUS NtOpenFile(PHANDLE FileHandle, ACCESS_MASK DesiredAccess, POBJECT_ATTRIBUTES ObjectAttributes,
                    PIO_STATUS_BLOCK IoStatusBlock, ULONG ShareAccess, ULONG OpenOptions);
/* Read/write need FILE_READ_DATA / FILE_WRITE_DATA on the handle; a device control needs the
 * access its CTL_CODE names. Buffer NULL with a non-zero length: STATUS_ACCESS_VIOLATION. */
NTSTATUS NtReadFile(HANDLE FileHandle, HANDLE Event, PIO_APC_ROUTINE ApcRoutine, PVOID ApcContext,
                    PIO_STATUS_BLOCK IoStatusBlock, PVOID Buffer, ULONG Length, PLARGE_INTEGER ByteOffset,
                    PULONG Key);
NTSTATUS NtWriteFile(HANDLE FileHandle, HANDLE Event, PIO_APC_ROUTINE ApcRoutine, PVOID ApcContext,
                     PIO_STATUS_BLOCK IoStatusBlock, PVOID Buffer, ULONG Length, PLARGE_INTEGER ByteOffset,
                     PULONG Key);
NTSTATUS NtDeviceIoControlFile(HANDLE FileHandle, HANDLE Event, PIO_APC_ROUTINE ApcRoutine, PVOID ApcContext,
                               PIO_STATUS_BLOCK IoStatusBlock, ULONG IoControlCode, PVOID InputBuffer,
                               ULONG InputBufferLength, PVOID OutputBuffer, ULONG OutputBufferLength);

/* CancelIo: IoCancelIrp on every IRP the *calling thread* issued on this file object, newest
 * first, then wait (polling every 10 ms, no timeout) until they have all completed. Always
 * STATUS_SUCCESS. A driver that never completes a cancelled IRP makes it hang: irpkit reports
 * "VERIFIER CancelIoHang" with the IRP's history after irpk_user_config.cancel_hang_report_ms
 * and keeps waiting (NT_SEMANTICS.md §7.2, T58-T61). */
NTSTATUS NtCancelIoFile(HANDLE FileHandle, PIO_STATUS_BLOCK IoStatusBlock);
/* CancelIoEx: IoCancelIrp on the IRPs any thread issued on this file object — only the one
 * whose IO_STATUS_BLOCK is IoRequestToCancel when that is non-NULL. Does not wait.
 * STATUS_NOT_FOUND when nothing matched (§7.3, T70). */
NTSTATUS NtCancelIoFileEx(HANDLE FileHandle, PIO_STATUS_BLOCK IoRequestToCancel, PIO_STATUS_BLOCK IoStatusBlock);
/* CancelSynchronousIo: IoCancelIrp on the target thread's pending synchronous requests (the one
 * with that IO_STATUS_BLOCK when IoRequestToCancel is non-NULL). STATUS_NOT_FOUND when none. */
NTSTATUS NtCancelSynchronousIoFile(HANDLE ThreadHandle, PIO_STATUS_BLOCK IoRequestToCancel,
                                   PIO_STATUS_BLOCK IoStatusBlock);

/* =========================================================================== objects */

/* Close a handle. The last handle to a file object sends IRP_MJ_CLEANUP and waits for it; the
 * I/O manager does not cancel the file's pending IRPs (the driver's cleanup does);
 * IRP_MJ_CLOSE follows when the last reference — pending IRPs hold one each — goes away
 * (§7.6). STATUS_INVALID_HANDLE for a closed or unknown handle; closing twice is safe. */
NTSTATUS NtClose(HANDLE Handle);
NTSTATUS NtDuplicateObject(HANDLE SourceProcessHandle, HANDLE SourceHandle, HANDLE TargetProcessHandle,
                           PHANDLE TargetHandle, ACCESS_MASK DesiredAccess, ULONG HandleAttributes,
                           ULONG Options);
/* A handle to an object the caller holds a pointer to (e.g. PsGetCurrentThread()). */
NTSTATUS ObOpenObjectByPointer(PVOID Object, ULONG HandleAttributes, PACCESS_STATE PassedAccessState,
                               ACCESS_MASK DesiredAccess, POBJECT_TYPE ObjectType,
                               KPROCESSOR_MODE AccessMode, PHANDLE Handle);

/* =========================================================================== events and waits */

NTSTATUS NtCreateEvent(PHANDLE EventHandle, ACCESS_MASK DesiredAccess, POBJECT_ATTRIBUTES ObjectAttributes,
                       EVENT_TYPE EventType, BOOLEAN InitialState);
NTSTATUS NtSetEvent(HANDLE EventHandle, PLONG PreviousState);
NTSTATUS NtResetEvent(HANDLE EventHandle, PLONG PreviousState);
NTSTATUS NtClearEvent(HANDLE EventHandle);
NTSTATUS NtWaitForSingleObject(HANDLE Handle, BOOLEAN Alertable, PLARGE_INTEGER Timeout);
/* WaitAny or WaitAll over up to MAXIMUM_WAIT_OBJECTS handles (Alertable applies to WaitAny;
 * a WaitAll wait only checks for APCs before it blocks). */
NTSTATUS NtWaitForMultipleObjects(ULONG Count, HANDLE Handles[], WAIT_TYPE WaitType, BOOLEAN Alertable,
                                  PLARGE_INTEGER Timeout);
/* Sleep (Interval as a Timeout). Alertable: returns STATUS_USER_APC once queued APCs ran. */
NTSTATUS NtDelayExecution(BOOLEAN Alertable, PLARGE_INTEGER DelayInterval);

/* =========================================================================== APCs and alerts */

/* Queue a user APC to a thread (handle from ObOpenObjectByPointer or PsCreateSystemThread, or
 * NtCurrentThread()); it runs the next time that thread waits alertably. */
NTSTATUS NtQueueApcThread(HANDLE ThreadHandle, PPS_APC_ROUTINE ApcRoutine, PVOID ApcArgument1,
                          PVOID ApcArgument2, PVOID ApcArgument3);
/* Break the thread's current or next alertable wait with STATUS_ALERTED. */
NTSTATUS NtAlertThread(HANDLE ThreadHandle);
/* Run the calling thread's queued APCs now; STATUS_ALERTED if it was alerted (flag cleared). */
NTSTATUS NtTestAlert(VOID);

#ifdef __cplusplus
}
#endif

#endif
