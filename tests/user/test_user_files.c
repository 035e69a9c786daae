/* Opening devices, FILE_OBJECTs, handles, bad handles and bad parameters, close → CLEANUP →
 * CLOSE (NT_SEMANTICS.md §7.6, T65). */
#include "irpkit/user.h"
#include "ob/ob.h"
#include "udriver.h"

#define RW (GENERIC_READ | GENERIC_WRITE | SYNCHRONIZE)

static int count_log(char what)
{
    udrv_event evs[512];
    int n = udrv_log(evs, 512), c = 0;
    for (int i = 0; i < n; i++) c += evs[i].what == what;
    return c;
}

TEST(open_by_device_and_link_names_builds_file_objects)
{
    long handles = ob_open_handles();
    udrv_load();
    HANDLE a, b, c, s;
    CHECK_EQ(u_open(L"\\??\\UTest", RW, 0, &a), STATUS_SUCCESS);
    CHECK_EQ(u_open(L"\\Device\\UTest", RW, 0, &b), STATUS_SUCCESS);
    CHECK_EQ(u_open(L"\\DosDevices\\utest", RW, 0, &c), STATUS_SUCCESS); /* alias, case-insensitive */
    CHECK_EQ(u_open(L"\\??\\UTest", RW, FILE_SYNCHRONOUS_IO_NONALERT, &s), STATUS_SUCCESS);
    PFILE_OBJECT fa = u_file(a), fs = u_file(s);
    REQUIRE(fa && fs);
    CHECK_EQ(fa->Type, IO_TYPE_FILE);
    CHECK_PTR(fa->DeviceObject, udrv.dev);
    CHECK(fa->FsContext != NULL); /* set by the driver's IRP_MJ_CREATE */
    CHECK(fa->FsContext != u_file(b)->FsContext);
    CHECK(!(fa->Flags & FO_SYNCHRONOUS_IO));
    CHECK(fs->Flags & FO_SYNCHRONOUS_IO);
    CHECK(fa->ReadAccess && fa->WriteAccess);
    CHECK_EQ(udrv.creates, 4);
    /* The driver's per-open context reaches every later request on that file object. */
    UCHAR buf[4];
    IO_STATUS_BLOCK iosb;
    CHECK_EQ(NtReadFile(a, NULL, NULL, NULL, &iosb, buf, sizeof buf, NULL, NULL), STATUS_SUCCESS);
    CHECK_PTR(udrv.last_fscontext, fa->FsContext);
    CHECK_EQ(NtClose(a), STATUS_SUCCESS);
    CHECK_EQ(NtClose(b), STATUS_SUCCESS);
    CHECK_EQ(NtClose(c), STATUS_SUCCESS);
    CHECK_EQ(NtClose(s), STATUS_SUCCESS);
    CHECK_EQ(udrv.cleanups, 4);
    CHECK_EQ(irpk_user_flush(20000), 0);
    CHECK_EQ(udrv.closes, 4);
    u_check_clean(handles);
    udrv_unload();
}

TEST(unknown_names_and_bad_create_parameters)
{
    long handles = ob_open_handles();
    udrv_load();
    HANDLE h;
    CHECK_EQ(u_open(L"\\??\\NoSuchLink", RW, 0, &h), STATUS_OBJECT_NAME_NOT_FOUND);
    CHECK_EQ(u_open(L"\\Device\\NoSuchDevice", RW, 0, &h), STATUS_OBJECT_NAME_NOT_FOUND);
    CHECK_EQ(u_open(L"\\Driver\\utest", RW, 0, &h), STATUS_OBJECT_NAME_NOT_FOUND); /* not a device */
    CHECK_EQ(u_open(L"UTest", RW, 0, &h), STATUS_OBJECT_NAME_INVALID);
    CHECK_EQ(u_open(L"\\??\\UTest", GENERIC_READ, FILE_SYNCHRONOUS_IO_NONALERT, &h), STATUS_INVALID_PARAMETER);
    CHECK_EQ(u_open(L"\\??\\UTest", RW, FILE_SYNCHRONOUS_IO_NONALERT | FILE_SYNCHRONOUS_IO_ALERT, &h),
             STATUS_INVALID_PARAMETER);
    UNICODE_STRING us = RTL_CONSTANT_STRING(L"\\??\\UTest");
    OBJECT_ATTRIBUTES oa;
    IO_STATUS_BLOCK iosb;
    InitializeObjectAttributes(&oa, &us, 0, NULL, NULL);
    CHECK_EQ(NtCreateFile(&h, RW, NULL, &iosb, NULL, 0, 0, FILE_OPEN, 0, NULL, 0), STATUS_ACCESS_VIOLATION);
    CHECK_EQ(NtCreateFile(NULL, RW, &oa, &iosb, NULL, 0, 0, FILE_OPEN, 0, NULL, 0), STATUS_ACCESS_VIOLATION);
    CHECK_EQ(NtCreateFile(&h, RW, &oa, NULL, NULL, 0, 0, FILE_OPEN, 0, NULL, 0), STATUS_ACCESS_VIOLATION);
    CHECK_EQ(NtCreateFile(&h, RW, &oa, &iosb, NULL, 0, 0, 9, 0, NULL, 0), STATUS_INVALID_PARAMETER);
    CHECK_EQ(NtCreateFile(&h, RW, &oa, &iosb, NULL, 0, 0x100, FILE_OPEN, 0, NULL, 0), STATUS_INVALID_PARAMETER);
    oa.Length = 3;
    CHECK_EQ(NtCreateFile(&h, RW, &oa, &iosb, NULL, 0, 0, FILE_OPEN, 0, NULL, 0), STATUS_INVALID_PARAMETER);
    CHECK_EQ(udrv.creates, 0); /* none of these reached the driver */
    u_check_clean(handles);
    udrv_unload();
}

TEST(exclusive_device_refuses_a_second_open)
{
    long handles = ob_open_handles();
    udrv_load();
    HANDLE a, b;
    CHECK_EQ(u_open(L"\\??\\UExcl", RW, 0, &a), STATUS_SUCCESS);
    CHECK_EQ(u_open(L"\\??\\UExcl", RW, 0, &b), STATUS_ACCESS_DENIED);
    CHECK_EQ(u_open(L"\\Device\\UExcl", RW, 0, &b), STATUS_ACCESS_DENIED);
    CHECK_EQ(udrv.creates, 1);
    CHECK_EQ(NtClose(a), STATUS_SUCCESS);
    CHECK_EQ(irpk_user_flush(20000), 0); /* the device is free once its file object is gone */
    CHECK_EQ(u_open(L"\\??\\UExcl", RW, 0, &b), STATUS_SUCCESS);
    CHECK_EQ(NtClose(b), STATUS_SUCCESS);
    u_check_clean(handles);
    udrv_unload();
}

TEST(bad_handles_give_status_codes_never_a_crash)
{
    long handles = ob_open_handles();
    udrv_load();
    HANDLE h, ev = u_event();
    UCHAR buf[8];
    IO_STATUS_BLOCK iosb;
    CHECK_EQ(u_open(L"\\??\\UTest", RW, 0, &h), STATUS_SUCCESS);
    CHECK_EQ(NtReadFile(NULL, NULL, NULL, NULL, &iosb, buf, 8, NULL, NULL), STATUS_INVALID_HANDLE);
    CHECK_EQ(NtReadFile((HANDLE)(uintptr_t)3, NULL, NULL, NULL, &iosb, buf, 8, NULL, NULL), STATUS_INVALID_HANDLE);
    CHECK_EQ(NtReadFile((HANDLE)(uintptr_t)0x40000, NULL, NULL, NULL, &iosb, buf, 8, NULL, NULL), STATUS_INVALID_HANDLE);
    /* Wrong type: NT says STATUS_OBJECT_TYPE_MISMATCH (Win32 maps it to ERROR_INVALID_HANDLE). */
    CHECK_EQ(NtReadFile(ev, NULL, NULL, NULL, &iosb, buf, 8, NULL, NULL), STATUS_OBJECT_TYPE_MISMATCH);
    CHECK_EQ(NtReadFile(h, h, NULL, NULL, &iosb, buf, 8, NULL, NULL), STATUS_OBJECT_TYPE_MISMATCH);
    CHECK_EQ(NtSetEvent(h, NULL), STATUS_OBJECT_TYPE_MISMATCH);
    CHECK_EQ(NtCancelIoFile(ev, &iosb), STATUS_OBJECT_TYPE_MISMATCH);
    HANDLE closed = h;
    CHECK_EQ(NtClose(h), STATUS_SUCCESS);
    CHECK_EQ(NtClose(closed), STATUS_INVALID_HANDLE); /* double close is safe */
    CHECK_EQ(NtReadFile(closed, NULL, NULL, NULL, &iosb, buf, 8, NULL, NULL), STATUS_INVALID_HANDLE);
    CHECK_EQ(NtWriteFile(closed, NULL, NULL, NULL, &iosb, buf, 8, NULL, NULL), STATUS_INVALID_HANDLE);
    CHECK_EQ(NtDeviceIoControlFile(closed, NULL, NULL, NULL, &iosb, UIOCTL_ECHO, buf, 8, buf, 8), STATUS_INVALID_HANDLE);
    CHECK_EQ(NtCancelIoFile(closed, &iosb), STATUS_INVALID_HANDLE);
    CHECK_EQ(NtCancelIoFileEx(closed, NULL, &iosb), STATUS_INVALID_HANDLE);
    CHECK_EQ(NtWaitForSingleObject(closed, FALSE, NULL), STATUS_INVALID_HANDLE);
    CHECK_EQ(NtSetEvent(NULL, NULL), STATUS_INVALID_HANDLE);
    CHECK_EQ(NtClose(ev), STATUS_SUCCESS);
    CHECK_EQ(NtClose(ev), STATUS_INVALID_HANDLE);
    CHECK_EQ(udrv.closes, 1);
    u_check_clean(handles);
    udrv_unload();
}

TEST(bad_buffers_are_access_violations_and_never_reach_the_driver)
{
    long handles = ob_open_handles();
    udrv_load();
    HANDLE h;
    UCHAR buf[8];
    IO_STATUS_BLOCK iosb;
    CHECK_EQ(u_open(L"\\??\\UTest", RW, 0, &h), STATUS_SUCCESS);
    CHECK_EQ(NtReadFile(h, NULL, NULL, NULL, &iosb, NULL, 10, NULL, NULL), STATUS_ACCESS_VIOLATION);
    CHECK_EQ(NtReadFile(h, NULL, NULL, NULL, NULL, buf, 8, NULL, NULL), STATUS_ACCESS_VIOLATION);
    CHECK_EQ(NtWriteFile(h, NULL, NULL, NULL, &iosb, NULL, 5, NULL, NULL), STATUS_ACCESS_VIOLATION);
    CHECK_EQ(NtDeviceIoControlFile(h, NULL, NULL, NULL, &iosb, UIOCTL_ECHO, NULL, 4, buf, 8), STATUS_ACCESS_VIOLATION);
    CHECK_EQ(NtDeviceIoControlFile(h, NULL, NULL, NULL, &iosb, UIOCTL_ECHO, buf, 8, NULL, 8), STATUS_ACCESS_VIOLATION);
    CHECK_EQ(NtCancelIoFile(h, NULL), STATUS_ACCESS_VIOLATION);
    CHECK_EQ(count_log('R') + count_log('W'), 0);
    /* A zero-length request needs no buffer. */
    CHECK_EQ(NtReadFile(h, NULL, NULL, NULL, &iosb, NULL, 0, NULL, NULL), STATUS_SUCCESS);
    CHECK_EQ(iosb.Status, STATUS_SUCCESS);
    CHECK_EQ(iosb.Information, 0);
    CHECK_EQ(NtClose(h), STATUS_SUCCESS);
    u_check_clean(handles);
    udrv_unload();
}

TEST(access_rights_are_checked_for_nt_callers_not_zw)
{
    long handles = ob_open_handles();
    udrv_load();
    HANDLE ro, wo, ev = u_event(), weak;
    UCHAR buf[8] = {1, 2, 3};
    IO_STATUS_BLOCK iosb;
    CHECK_EQ(u_open(L"\\??\\UTest", GENERIC_READ | SYNCHRONIZE, 0, &ro), STATUS_SUCCESS);
    CHECK_EQ(u_open(L"\\??\\UTest", GENERIC_WRITE | SYNCHRONIZE, 0, &wo), STATUS_SUCCESS);
    CHECK_EQ(NtWriteFile(ro, NULL, NULL, NULL, &iosb, buf, 3, NULL, NULL), STATUS_ACCESS_DENIED);
    CHECK_EQ(NtReadFile(wo, NULL, NULL, NULL, &iosb, buf, 3, NULL, NULL), STATUS_ACCESS_DENIED);
    CHECK_EQ(NtDeviceIoControlFile(ro, NULL, NULL, NULL, &iosb, UIOCTL_NEEDS_WRITE, buf, 3, buf, 3), STATUS_ACCESS_DENIED);
    CHECK_EQ(NtDeviceIoControlFile(ro, NULL, NULL, NULL, &iosb, UIOCTL_ECHO, buf, 3, buf, 3), STATUS_SUCCESS);
    CHECK_EQ(NtDeviceIoControlFile(wo, NULL, NULL, NULL, &iosb, UIOCTL_NEEDS_WRITE, buf, 3, buf, 3), STATUS_SUCCESS);
    /* Kernel-mode callers (Zw*) are not checked, as in Windows. */
    CHECK_EQ(ZwWriteFile(ro, NULL, NULL, NULL, &iosb, buf, 3, NULL, NULL), STATUS_SUCCESS);
    CHECK_EQ(udrv.last_write_len, 3);
    /* An event handle without EVENT_MODIFY_STATE cannot be set, nor given to a read. */
    CHECK_EQ(NtDuplicateObject(NtCurrentProcess(), ev, NtCurrentProcess(), &weak, SYNCHRONIZE, 0, 0), STATUS_SUCCESS);
    CHECK_EQ(NtSetEvent(weak, NULL), STATUS_ACCESS_DENIED);
    CHECK_EQ(NtReadFile(ro, weak, NULL, NULL, &iosb, buf, 3, NULL, NULL), STATUS_ACCESS_DENIED);
    CHECK_EQ(NtWaitForSingleObject(weak, FALSE, &(LARGE_INTEGER){.QuadPart = 0}), STATUS_TIMEOUT);
    NtClose(weak);
    NtClose(ev);
    NtClose(ro);
    NtClose(wo);
    u_check_clean(handles);
    udrv_unload();
}

/* T65: closing a handle that is not the file object's last sends no IRP. */
TEST(t65_closing_a_non_last_handle_sends_no_irp)
{
    long handles = ob_open_handles();
    udrv_load();
    HANDLE h, dup;
    UCHAR buf[4];
    IO_STATUS_BLOCK iosb;
    CHECK_EQ(u_open(L"\\??\\UTest", RW, 0, &h), STATUS_SUCCESS);
    CHECK_EQ(NtDuplicateObject(NtCurrentProcess(), h, NtCurrentProcess(), &dup, 0, 0, DUPLICATE_SAME_ACCESS),
             STATUS_SUCCESS);
    CHECK_PTR(u_file(dup), u_file(h));
    CHECK_EQ(NtClose(h), STATUS_SUCCESS);
    CHECK_EQ(udrv.cleanups, 0);
    CHECK_EQ(udrv.closes, 0);
    CHECK_EQ(NtReadFile(dup, NULL, NULL, NULL, &iosb, buf, 4, NULL, NULL), STATUS_SUCCESS);
    CHECK_EQ(NtClose(dup), STATUS_SUCCESS);
    CHECK_EQ(udrv.cleanups, 1);
    CHECK_EQ(irpk_user_flush(20000), 0);
    CHECK_EQ(udrv.closes, 1);
    u_check_clean(handles);
    udrv_unload();
}

/* The last handle: IRP_MJ_CLEANUP (synchronously, in NtClose), then IRP_MJ_CLOSE, both for the
 * file object IRP_MJ_CREATE built. */
TEST(last_close_sends_cleanup_then_close_for_the_same_file_object)
{
    long handles = ob_open_handles();
    udrv_load();
    HANDLE h;
    UCHAR buf[4];
    IO_STATUS_BLOCK iosb;
    CHECK_EQ(u_open(L"\\??\\UTest", RW, 0, &h), STATUS_SUCCESS);
    PFILE_OBJECT fo = u_file(h);
    CHECK_EQ(NtReadFile(h, NULL, NULL, NULL, &iosb, buf, 4, NULL, NULL), STATUS_SUCCESS);
    CHECK_EQ(NtClose(h), STATUS_SUCCESS);
    CHECK_EQ(irpk_user_flush(20000), 0);
    udrv_event evs[16];
    int n = udrv_log(evs, 16);
    REQUIRE(n == 4);
    const char order[] = "ORUL";
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(evs[i].what, order[i]);
        CHECK_PTR(evs[i].file, fo);
    }
    u_check_clean(handles);
    udrv_unload();
}
