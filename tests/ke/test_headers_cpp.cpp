// The WDK-face headers (<ntddk.h>, <ntifs.h>) and every public irpkit header compile as C++ (g++,
// -Wall -Wextra -Werror) and link against the C library: driver code written in C++ works.
#include <ntddk.h>
#include <ntifs.h>

#include "irpk_all_public_headers.h" // generated: every include/irpkit/*.h
#include "test.h"

static_assert(sizeof(LONG) == 4, "LLP64 LONG");
static_assert(sizeof(LIST_ENTRY) == 2 * sizeof(void *), "LIST_ENTRY is two links");

namespace {
struct Node {
    int value;
    LIST_ENTRY link;
};
} // namespace

TEST(cpp_list_ops_and_containing_record)
{
    LIST_ENTRY head;
    InitializeListHead(&head);
    Node nodes[3] = {{1, {nullptr, nullptr}}, {2, {nullptr, nullptr}}, {3, {nullptr, nullptr}}};
    for (auto &n : nodes) InsertTailList(&head, &n.link);
    int sum = 0, order = 0;
    for (PLIST_ENTRY p = head.Flink; p != &head; p = p->Flink) {
        Node *n = CONTAINING_RECORD(p, Node, link);
        sum += n->value;
        order = order * 10 + n->value;
    }
    CHECK_EQ(sum, 6);
    CHECK_EQ(order, 123);
    CHECK(RemoveEntryList(&nodes[1].link) == FALSE);
    CHECK(CONTAINING_RECORD(RemoveTailList(&head), Node, link) == &nodes[2]);
}

TEST(cpp_status_macros_and_kernel_calls)
{
    CHECK(NT_SUCCESS(STATUS_SUCCESS));
    CHECK(!NT_SUCCESS(STATUS_INSUFFICIENT_RESOURCES));
    KSPIN_LOCK lock;
    KeInitializeSpinLock(&lock);
    KIRQL old;
    KeAcquireSpinLock(&lock, &old);
    CHECK_EQ(KeGetCurrentIrql(), DISPATCH_LEVEL);
    KeReleaseSpinLock(&lock, old);
    CHECK_EQ(KeGetCurrentIrql(), PASSIVE_LEVEL);
    KEVENT ev;
    KeInitializeEvent(&ev, NotificationEvent, FALSE);
    CHECK_EQ(KeSetEvent(&ev, IO_NO_INCREMENT, FALSE), 0);
    LARGE_INTEGER zero;
    zero.QuadPart = 0;
    CHECK_EQ(KeWaitForSingleObject(&ev, Executive, KernelMode, FALSE, &zero), STATUS_SUCCESS);
    UNICODE_STRING s = RTL_CONSTANT_STRING(L"abc");
    CHECK_EQ(s.Length, 3 * sizeof(WCHAR));
    CHECK_STR(irpk_bugcheck_name(0xC4), "DRIVER_VERIFIER_DETECTED_VIOLATION");
}
