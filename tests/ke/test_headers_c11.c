/* Every WDK-face header and every public irpkit header compiles as strict C11 (-std=c11, no GNU
 * extensions) together, in one translation unit, and the basics work. */
#include <ntddk.h>
#include <ntifs.h>
#include <wdm.h>

#include "irpk_all_public_headers.h" /* generated: includes every public irpkit header */
#include "test.h"

_Static_assert(sizeof(LONG) == 4 && sizeof(ULONG) == 4, "LLP64 LONG/ULONG");
_Static_assert(sizeof(LONG64) == 8 && sizeof(ULONG_PTR) == sizeof(void *), "widths");
_Static_assert(sizeof(KSPIN_LOCK) == sizeof(void *), "KSPIN_LOCK hosts a lock word");

TEST(c11_list_ops_and_status_macros)
{
    LIST_ENTRY h, a;
    InitializeListHead(&h);
    InsertTailList(&h, &a);
    CHECK(!IsListEmpty(&h));
    CHECK_PTR(RemoveHeadList(&h), &a);
    CHECK(IsListEmpty(&h));
    CHECK(NT_SUCCESS(STATUS_SUCCESS));
    CHECK(NT_SUCCESS(STATUS_PENDING));
    CHECK(!NT_SUCCESS(STATUS_CANCELLED));
    CHECK(NT_ERROR(STATUS_INVALID_PARAMETER));
    CHECK(NT_WARNING(STATUS_BUFFER_OVERFLOW));
    CHECK(NT_INFORMATION(STATUS_TIMEOUT) == 0); /* 0x102 is a success code, severity 0 */
    CHECK_EQ(STATUS_WAIT_0 + 1, STATUS_WAIT_1);
    CHECK_EQ(DISPATCH_LEVEL, 2);
    CHECK_EQ(ARRAYSIZE(((int[5]){0})), 5);
}

TEST(c11_public_headers_usable)
{
    CHECK_STR(irpk_bugcheck_name(IRPK_BUGCHECK_MULTIPLE_IRP_COMPLETE_REQUESTS),
              "MULTIPLE_IRP_COMPLETE_REQUESTS");
    CHECK_EQ(irpk_compat_get(IRPK_COMPAT_BYKEY_WRAP_ON_EQUAL), 1);
    CHECK(irpk_verifier_get_mode() != IRPK_VERIFIER_FATAL || 1);
    KIRQL old = KeRaiseIrqlToDpcLevel();
    CHECK_EQ(KeGetCurrentIrql(), DISPATCH_LEVEL);
    KeLowerIrql(old);
    CHECK_EQ(KeGetCurrentIrql(), PASSIVE_LEVEL);
}
