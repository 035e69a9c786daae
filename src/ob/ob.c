/* Object manager: object headers with reference and handle counts, one handle table. */
#include "ob/ob.h"

#include "irpkit/bugcheck.h"
#include "platform/platform.h"

#define OB_MAGIC 0x4A424F49u /* "IOBJ" */

typedef struct ob_header {
    uint32_t magic;
    int32_t refs;    /* atomic */
    int32_t handles; /* atomic */
    uint32_t pad;
    const ob_type *type;
    uint64_t pad2; /* keep the body 16-byte aligned */
} ob_header;

static ob_header *header_of(const void *body) { return (ob_header *)body - 1; }

void *ob_create(const ob_type *type, size_t body_size)
{
    ob_header *h = plat_calloc(1, sizeof *h + body_size);
    if (!h) return NULL;
    h->magic = OB_MAGIC;
    h->refs = 1;
    h->type = type;
    return h + 1;
}

const ob_type *ob_type_of(const void *body) { return header_of(body)->type; }
LONG ob_refcount(const void *body) { return plat_load32(&header_of(body)->refs); }
LONG ob_handle_count(const void *body) { return plat_load32(&header_of(body)->handles); }

LONG_PTR ObfReferenceObject(PVOID Object)
{
    ob_header *h = header_of(Object);
    /* The caller already holds a reference (or the handle table's lock pins the handle's), so
     * the count cannot reach zero while we add ours. */
    int32_t old = plat_fetch_add32(&h->refs, 1);
    if (old <= 0)
        irpk_bugcheck_raise(0x18 /* REFERENCE_BY_POINTER */, 0, (uintptr_t)Object, (uintptr_t)old, 0,
                            "ObReferenceObject on an object whose reference count was %d (already "
                            "deleted).",
                            (int)old);
    return old + 1;
}

LONG_PTR ObfDereferenceObject(PVOID Object)
{
    ob_header *h = header_of(Object);
    int32_t old = plat_fetch_add32(&h->refs, -1);
    if (old == 1) {
        /* Last reference: nobody else can reach the object any more. */
        if (h->type && h->type->delete_body) h->type->delete_body(Object);
        h->magic = 0;
        plat_free(h);
    } else if (old <= 0) {
        irpk_bugcheck_raise(0x18 /* REFERENCE_BY_POINTER */, 0, (uintptr_t)Object, (uintptr_t)old, 0,
                            "ObDereferenceObject dropped a reference that was not held (count %d): "
                            "a reference leak in reverse.",
                            (int)old);
    }
    return old - 1;
}

/* ---- handle table: handle value = (slot + 1) * 4, like Windows' multiples of four */

typedef struct handle_entry {
    void *body;
    ACCESS_MASK access;
    ULONG attributes;
} handle_entry;

/* table_lock guards the table; it is a leaf lock (no callbacks and no other lock under it). */
static plat_lockword table_lock;
static handle_entry *table;
static size_t table_cap;
static size_t free_hint;
static int32_t open_handles;

static void reset_table(void)
{
    plat_lock_init(&table_lock);
    table = NULL; /* explore mode: its memory was released with the execution */
    table_cap = 0;
    free_hint = 0;
    open_handles = 0;
}

__attribute__((constructor)) static void register_reset(void) { plat_on_reset(reset_table); }

static bool grow(void)
{
    size_t cap = table_cap ? table_cap * 2 : 64;
    handle_entry *t = plat_calloc(cap, sizeof *t);
    if (!t) return false;
    if (table) memcpy(t, table, table_cap * sizeof *t);
    plat_free(table);
    table = t;
    table_cap = cap;
    return true;
}

NTSTATUS ob_insert_handle(void *body, ACCESS_MASK access, ULONG attributes, PHANDLE handle)
{
    /* Counted before the handle is in the table: a close racing in on the new handle value
     * finds both counts already raised. */
    ObfReferenceObject(body);
    plat_fetch_add32(&header_of(body)->handles, 1);
    plat_lock_acquire(&table_lock);
    size_t i = free_hint;
    while (i < table_cap && table[i].body) i++;
    if (i == table_cap && !grow()) {
        plat_lock_release(&table_lock);
        plat_fetch_add32(&header_of(body)->handles, -1);
        ObfDereferenceObject(body);
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    table[i] = (handle_entry){body, access, attributes};
    free_hint = i + 1;
    open_handles++;
    plat_lock_release(&table_lock);
    *handle = (HANDLE)(uintptr_t)((i + 1) * 4);
    return STATUS_SUCCESS;
}

static bool slot_of(HANDLE handle, size_t *slot)
{
    uintptr_t v = (uintptr_t)handle;
    if (v == 0 || v % 4 != 0) return false;
    *slot = v / 4 - 1;
    return true;
}

NTSTATUS ob_reference_handle(HANDLE handle, const ob_type *type, void **body, ACCESS_MASK *granted)
{
    size_t i;
    if (!slot_of(handle, &i)) return STATUS_INVALID_HANDLE;
    plat_lock_acquire(&table_lock);
    if (i >= table_cap || !table[i].body) {
        plat_lock_release(&table_lock);
        return STATUS_INVALID_HANDLE;
    }
    void *b = table[i].body;
    if (type && header_of(b)->type != type) {
        plat_lock_release(&table_lock);
        return STATUS_OBJECT_TYPE_MISMATCH;
    }
    /* Referenced under the lock: a concurrent close cannot drop the last reference first. */
    ObfReferenceObject(b);
    if (granted) *granted = table[i].access;
    plat_lock_release(&table_lock);
    *body = b;
    return STATUS_SUCCESS;
}

NTSTATUS ob_close_handle(HANDLE handle)
{
    size_t i;
    if (!slot_of(handle, &i)) return STATUS_INVALID_HANDLE;
    plat_lock_acquire(&table_lock);
    if (i >= table_cap || !table[i].body) {
        plat_lock_release(&table_lock);
        return STATUS_INVALID_HANDLE;
    }
    void *b = table[i].body;
    table[i].body = NULL;
    if (i < free_hint) free_hint = i;
    open_handles--;
    plat_lock_release(&table_lock);
    /* Outside the lock: the close callback may send IRPs and block. The fetch_add picks exactly
     * one last closer. */
    if (plat_fetch_add32(&header_of(b)->handles, -1) == 1) {
        const ob_type *t = header_of(b)->type;
        if (t && t->last_handle_closed) t->last_handle_closed(b);
    }
    ObfDereferenceObject(b);
    return STATUS_SUCCESS;
}

LONG ob_open_handles(void)
{
    plat_lock_acquire(&table_lock);
    LONG n = open_handles;
    plat_lock_release(&table_lock);
    return n;
}

NTSTATUS ObReferenceObjectByHandle(HANDLE Handle, ACCESS_MASK DesiredAccess, POBJECT_TYPE ObjectType,
                                   KPROCESSOR_MODE AccessMode, PVOID *Object,
                                   POBJECT_HANDLE_INFORMATION HandleInformation)
{
    ACCESS_MASK granted = 0;
    void *body = NULL;
    NTSTATUS st = ob_reference_handle(Handle, ObjectType, &body, &granted);
    if (!NT_SUCCESS(st)) return st;
    /* Kernel-mode callers skip the access check, as in Windows. */
    if (AccessMode == UserMode && (DesiredAccess & ~granted) && !(granted & GENERIC_ALL)) {
        ObfDereferenceObject(body);
        return STATUS_ACCESS_DENIED;
    }
    if (HandleInformation) {
        HandleInformation->GrantedAccess = granted;
        HandleInformation->HandleAttributes = 0;
    }
    *Object = body;
    return STATUS_SUCCESS;
}

NTSTATUS ZwClose(HANDLE Handle) { return ob_close_handle(Handle); }
