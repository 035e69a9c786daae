// <ntifs.h> (Nt* services) and irpkit/user.h compile as C++ (g++/clang++) and work from C++.
#include <ntifs.h>

#include "irpkit/user.h"
#include "test.h"

static_assert(FILE_OPEN == 1 && FILE_SYNCHRONOUS_IO_NONALERT == 0x20 && FILE_SYNCHRONOUS_IO_ALERT == 0x10,
              "create values");
static_assert(EVENT_ALL_ACCESS == 0x1F0003 && FILE_GENERIC_READ == 0x120089 && FILE_GENERIC_WRITE == 0x120116,
              "access masks");
static_assert(DUPLICATE_SAME_ACCESS == 2 && FILE_SHARE_VALID_FLAGS == 7, "option values");
static_assert(sizeof(IO_STATUS_BLOCK) == 2 * sizeof(void *), "IO_STATUS_BLOCK layout");

static VOID NTAPI Apc(PVOID Context, PIO_STATUS_BLOCK Iosb, ULONG Reserved)
{
    UNREFERENCED_PARAMETER(Context);
    UNREFERENCED_PARAMETER(Iosb);
    UNREFERENCED_PARAMETER(Reserved);
}

TEST(cxx_uses_the_nt_services)
{
    PIO_APC_ROUTINE routine = Apc;
    CHECK(routine != nullptr);
    UNICODE_STRING name = RTL_CONSTANT_STRING(L"\\??\\NoSuchDevice");
    OBJECT_ATTRIBUTES oa;
    InitializeObjectAttributes(&oa, &name, OBJ_CASE_INSENSITIVE, NULL, NULL);
    IO_STATUS_BLOCK iosb;
    HANDLE h = nullptr;
    CHECK_EQ(NtCreateFile(&h, GENERIC_READ | SYNCHRONIZE, &oa, &iosb, nullptr, FILE_ATTRIBUTE_NORMAL, 0, FILE_OPEN,
                          FILE_SYNCHRONOUS_IO_NONALERT, nullptr, 0),
             STATUS_OBJECT_NAME_NOT_FOUND);
    HANDLE ev = nullptr;
    CHECK_EQ(NtCreateEvent(&ev, EVENT_ALL_ACCESS, nullptr, NotificationEvent, FALSE), STATUS_SUCCESS);
    CHECK_EQ(NtSetEvent(ev, nullptr), STATUS_SUCCESS);
    CHECK_EQ(NtWaitForSingleObject(ev, FALSE, nullptr), STATUS_SUCCESS);
    CHECK_EQ(NtClose(ev), STATUS_SUCCESS);
    void *file = nullptr;
    CHECK_EQ(irpk_open("\\Device\\NoSuchDevice", IRPK_OPEN_READ, &file), STATUS_OBJECT_NAME_NOT_FOUND);
    irpk_overlapped ov;
    CHECK_EQ(irpk_overlapped_init(&ov), STATUS_SUCCESS);
    irpk_overlapped_dispose(&ov);
}
