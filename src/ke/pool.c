/* Pool allocations and non-paged lookaside lists.
 *
 * Every pool block carries a small header (magic, tag, size) so ExFreePoolWithTag can check the
 * tag and teardown can count live allocations per tag. Failure returns NULL, never aborts. */
#include "ke/ke.h"

#define POOL_MAGIC 0x4C4F4F50u /* "POOL" */
#define POOL_FREED 0x44454546u /* "FEED" */

typedef struct pool_header {
    uint32_t magic;
    ULONG tag;
    size_t size;
    uint64_t pad[2]; /* keep the payload 16-byte aligned (24 bytes left it 8 off) */
} pool_header;
_Static_assert(sizeof(pool_header) % 16 == 0, "pool payload must stay 16-byte aligned");

#define TAG_SLOTS 256
/* tags_lock guards the per-tag counters (statistics): a bookkeeping leaf lock, never a
 * scheduling point. */
static plat_lockword tags_lock;
static struct {
    ULONG tag;
    long live;
} tags[TAG_SLOTS];
static int64_t live_total;

static void reset_pool_accounting(void)
{
    memset(tags, 0, sizeof tags);
    live_total = 0;
}

static void count_tag(ULONG tag, long delta)
{
    static int32_t registered;
    if (plat_bk_cas32(&registered, 0, 1) == 0) plat_on_reset(reset_pool_accounting);
    plat_bk_fetch_add64(&live_total, delta);
    plat_bk_lock_acquire(&tags_lock);
    unsigned h = (tag * 2654435761u) % TAG_SLOTS;
    for (unsigned i = 0; i < TAG_SLOTS; i++) {
        unsigned s = (h + i) % TAG_SLOTS;
        if (tags[s].tag == tag || (tags[s].tag == 0 && tags[s].live == 0)) {
            tags[s].tag = tag;
            tags[s].live += delta;
            break;
        }
    }
    plat_bk_lock_release(&tags_lock);
}

long ke_pool_outstanding(void) { return (long)plat_bk_load64(&live_total); }

long ke_pool_outstanding_tag(ULONG tag)
{
    long n = 0;
    plat_bk_lock_acquire(&tags_lock);
    for (unsigned i = 0; i < TAG_SLOTS; i++)
        if (tags[i].tag == tag) n = tags[i].live;
    plat_bk_lock_release(&tags_lock);
    return n;
}

static PVOID pool_alloc(SIZE_T bytes, ULONG tag, bool zero)
{
    if (bytes > SIZE_MAX - sizeof(pool_header)) return NULL;
    pool_header *h = plat_alloc(sizeof *h + bytes);
    if (!h) return NULL;
    h->magic = POOL_MAGIC;
    h->tag = tag;
    h->size = bytes;
    if (zero) memset(h + 1, 0, bytes);
    count_tag(tag, 1);
    return h + 1;
}

PVOID ExAllocatePoolWithTag(POOL_TYPE PoolType, SIZE_T NumberOfBytes, ULONG Tag)
{
    (void)PoolType;
    return pool_alloc(NumberOfBytes, Tag, false);
}

PVOID ExAllocatePool(POOL_TYPE PoolType, SIZE_T NumberOfBytes)
{
    return ExAllocatePoolWithTag(PoolType, NumberOfBytes, 0x656E6F4E /* "None" */);
}

PVOID ExAllocatePoolZero(POOL_TYPE PoolType, SIZE_T NumberOfBytes, ULONG Tag)
{
    (void)PoolType;
    return pool_alloc(NumberOfBytes, Tag, true);
}

PVOID ExAllocatePool2(POOL_FLAGS Flags, SIZE_T NumberOfBytes, ULONG Tag)
{
    return pool_alloc(NumberOfBytes, Tag, !(Flags & POOL_FLAG_UNINITIALIZED));
}

static void pool_free(PVOID p, ULONG tag, bool check_tag)
{
    if (!p) {
        ke_bugcheck(IRPK_BUGCHECK_BAD_POOL_CALLER, 0x46, 0, 0, 0,
                    "ExFreePool(NULL).\nUsual cause: freeing a pointer whose allocation failed.");
        return;
    }
    pool_header *h = (pool_header *)p - 1;
    if (h->magic != POOL_MAGIC) {
        ke_bugcheck(IRPK_BUGCHECK_BAD_POOL_CALLER, 0x46, (uintptr_t)p, h->magic, 0,
                    "ExFreePool of memory that is not a live pool block (double free or foreign "
                    "pointer); the free is ignored.");
        return;
    }
    if (check_tag && h->tag != tag) {
        ke_bugcheck(IRPK_BUGCHECK_BAD_POOL_CALLER, 0x9B, (uintptr_t)p, tag, h->tag,
                    "ExFreePoolWithTag with tag 0x%08X but the block was allocated with tag "
                    "0x%08X; freed anyway.",
                    tag, h->tag);
    }
    count_tag(h->tag, -1);
    h->magic = POOL_FREED;
    plat_free(h);
}

VOID ExFreePoolWithTag(PVOID P, ULONG Tag) { pool_free(P, Tag, Tag != 0); }
VOID ExFreePool(PVOID P) { pool_free(P, 0, false); }

/* ---- lookaside lists: a spin-lock protected free list with a depth cap */

#define DEFAULT_DEPTH 256

VOID ExInitializeNPagedLookasideList(PNPAGED_LOOKASIDE_LIST L, PALLOCATE_FUNCTION Allocate,
                                     PFREE_FUNCTION Free, ULONG Flags, SIZE_T Size, ULONG Tag,
                                     USHORT Depth)
{
    (void)Flags;
    memset(L, 0, sizeof *L);
    L->Depth = L->MaximumDepth = Depth ? Depth : DEFAULT_DEPTH;
#if defined(IRPK_SANITIZER_ASAN)
    /* Under AddressSanitizer nothing is cached, so a use after free is caught at once. */
    L->Depth = 0;
#endif
    L->Type = NonPagedPool;
    L->Tag = Tag;
    L->Size = (ULONG)(Size < sizeof(SINGLE_LIST_ENTRY) ? sizeof(SINGLE_LIST_ENTRY) : Size);
    L->Allocate = Allocate;
    L->Free = Free;
    InitializeListHead(&L->ListEntry);
    KeInitializeSpinLock(&L->Lock);
}

PVOID ExAllocateFromNPagedLookasideList(PNPAGED_LOOKASIDE_LIST L)
{
    /* The free list and counters are only touched with L->Lock held. The bare platform lock,
     * not KeAcquireSpinLock: any IRQL, untracked, a leaf (Allocate/Free run after the release). */
    PSINGLE_LIST_ENTRY e = NULL;
    plat_lock_acquire((volatile plat_lockword *)&L->Lock);
    L->TotalAllocates++;
    e = PopEntryList(&L->ListHead);
    if (e) L->IrpkCount--;
    else L->AllocateMisses++;
    plat_lock_release((volatile plat_lockword *)&L->Lock);
    if (e) return e;
    return L->Allocate ? L->Allocate(L->Type, L->Size, L->Tag)
                       : ExAllocatePoolWithTag(L->Type, L->Size, L->Tag);
}

VOID ExFreeToNPagedLookasideList(PNPAGED_LOOKASIDE_LIST L, PVOID Entry)
{
    bool cached = false;
    plat_lock_acquire((volatile plat_lockword *)&L->Lock);
    L->TotalFrees++;
    if (L->IrpkCount < L->Depth) {
        PushEntryList(&L->ListHead, (PSINGLE_LIST_ENTRY)Entry);
        L->IrpkCount++;
        cached = true;
    } else {
        L->FreeMisses++;
    }
    plat_lock_release((volatile plat_lockword *)&L->Lock);
    if (cached) return;
    if (L->Free) L->Free(Entry);
    else ExFreePoolWithTag(Entry, L->Tag);
}

VOID ExDeleteNPagedLookasideList(PNPAGED_LOOKASIDE_LIST L)
{
    for (;;) {
        plat_lock_acquire((volatile plat_lockword *)&L->Lock);
        PSINGLE_LIST_ENTRY e = PopEntryList(&L->ListHead);
        if (e) L->IrpkCount--;
        plat_lock_release((volatile plat_lockword *)&L->Lock);
        if (!e) break;
        if (L->Free) L->Free(e);
        else ExFreePoolWithTag(e, L->Tag);
    }
}
