/* The object namespace: \Device\X, \Driver\X and symbolic links in \?? (\DosDevices is an
 * alias). A list under one leaf lock; nothing is called while it is held. */
#include <wctype.h>

#include "io/io.h"

#define NS_NAME_MAX 128

typedef enum ns_kind { NS_DEVICE, NS_DRIVER, NS_LINK } ns_kind;

typedef struct ns_entry {
    struct ns_entry *next;
    ns_kind kind;
    void *object;                /* device or driver object */
    wchar_t name[NS_NAME_MAX];   /* normalised full path */
    wchar_t target[NS_NAME_MAX]; /* links: the target path */
    int in_entry;                /* drivers: DriverEntry has not returned yet (under ns_lock) */
} ns_entry;

static plat_lockword ns_lock;
static ns_entry *ns_head;

static void ns_reset(void) { ns_head = NULL; }

__attribute__((constructor)) static void ns_register_reset(void) { plat_on_reset(ns_reset); }

/* Copy a counted name, mapping \DosDevices\ to \??\. */
static void normalise(const wchar_t *src, size_t chars, wchar_t *out)
{
    static const wchar_t dos[] = L"\\DosDevices\\";
    size_t dlen = wcslen(dos), o = 0, i = 0;
    if (chars >= dlen && !wcsncasecmp(src, dos, dlen)) {
        wcscpy(out, L"\\??\\");
        o = 4;
        i = dlen;
    }
    for (; i < chars && o + 1 < NS_NAME_MAX; i++) out[o++] = src[i];
    out[o] = 0;
}

static void normalise_us(PCUNICODE_STRING s, wchar_t *out)
{
    normalise(s->Buffer, s->Length / sizeof(WCHAR), out);
}

static ns_entry *find_locked(const wchar_t *name, int kind)
{
    for (ns_entry *e = ns_head; e; e = e->next)
        if ((kind < 0 || e->kind == (ns_kind)kind) && !wcscasecmp(e->name, name)) return e;
    return NULL;
}

/* The namespace entry of a loaded driver object (ns_lock held). */
static ns_entry *driver_entry_locked(PDRIVER_OBJECT drv)
{
    for (ns_entry *e = ns_head; e; e = e->next)
        if (e->kind == NS_DRIVER && e->object == drv) return e;
    return NULL;
}

static NTSTATUS insert(ns_kind kind, const wchar_t *name, void *object, const wchar_t *target)
{
    ns_entry *e = plat_calloc(1, sizeof *e);
    if (!e) return STATUS_INSUFFICIENT_RESOURCES;
    e->kind = kind;
    e->object = object;
    e->in_entry = kind == NS_DRIVER; /* io_ns_add_driver: its DriverEntry runs next */
    wcsncpy(e->name, name, NS_NAME_MAX - 1);
    if (target) wcsncpy(e->target, target, NS_NAME_MAX - 1);
    plat_lock_acquire(&ns_lock);
    /* Looked up and linked in one lock hold: two creators of one name cannot both succeed. */
    bool taken = find_locked(name, -1) != NULL;
    if (!taken) {
        e->next = ns_head;
        ns_head = e;
        if (kind == NS_DEVICE) { /* in the same hold: no open can see the name before this */
            PDEVICE_OBJECT dev = object;
            ns_entry *drv = driver_entry_locked(dev->DriverObject);
            io_dev_priv(dev)->open_state = drv && drv->in_entry ? IO_OPEN_IN_DRIVER_ENTRY : IO_OPEN_BY_FLAG;
        }
    }
    plat_lock_release(&ns_lock);
    if (taken) plat_free(e);
    return taken ? STATUS_OBJECT_NAME_COLLISION : STATUS_SUCCESS;
}

static bool remove_entry(const wchar_t *name, int kind)
{
    plat_lock_acquire(&ns_lock);
    ns_entry **pp = &ns_head;
    while (*pp && !((kind < 0 || (*pp)->kind == (ns_kind)kind) && !wcscasecmp((*pp)->name, name)))
        pp = &(*pp)->next;
    ns_entry *e = *pp;
    if (e) *pp = e->next;
    plat_lock_release(&ns_lock);
    plat_free(e);
    return e != NULL;
}

NTSTATUS io_ns_add_device(PDEVICE_OBJECT dev, PCUNICODE_STRING name, wchar_t *stored, size_t n)
{
    wchar_t full[NS_NAME_MAX];
    normalise_us(name, full);
    NTSTATUS st = insert(NS_DEVICE, full, dev, NULL);
    if (NT_SUCCESS(st)) wcsncpy(stored, full, n - 1);
    return st;
}

void io_ns_remove_device(const wchar_t *name)
{
    if (name[0]) remove_entry(name, NS_DEVICE);
}

NTSTATUS io_ns_add_driver(PDRIVER_OBJECT drv) { return insert(NS_DRIVER, drv->DriverName.Buffer, drv, NULL); }

void io_ns_driver_entry_done(PDRIVER_OBJECT drv)
{
    plat_lock_acquire(&ns_lock);
    ns_entry *e = driver_entry_locked(drv);
    if (e) e->in_entry = 0; /* devices created from now on are the driver's to clear */
    /* The device list and the flags are the driver's, written by DriverEntry on this thread
     * (IoCreateDevice: one driver's creations do not run concurrently); the open_state change
     * is under ns_lock, where opens read it, so an open that sees READY also sees the flag
     * cleared here. */
    for (PDEVICE_OBJECT d = drv->DeviceObject; d; d = d->NextDevice) {
        d->Flags &= ~DO_DEVICE_INITIALIZING;
        io_dev_priv(d)->open_state = IO_OPEN_READY;
    }
    plat_lock_release(&ns_lock);
}

void io_ns_remove_driver(PDRIVER_OBJECT drv) { remove_entry(drv->DriverName.Buffer, NS_DRIVER); }

NTSTATUS IoCreateSymbolicLink(PUNICODE_STRING SymbolicLinkName, PUNICODE_STRING DeviceName)
{
    wchar_t link[NS_NAME_MAX], target[NS_NAME_MAX];
    normalise_us(SymbolicLinkName, link);
    normalise_us(DeviceName, target);
    return insert(NS_LINK, link, NULL, target);
}

NTSTATUS IoDeleteSymbolicLink(PUNICODE_STRING SymbolicLinkName)
{
    wchar_t link[NS_NAME_MAX];
    normalise_us(SymbolicLinkName, link);
    return remove_entry(link, NS_LINK) ? STATUS_SUCCESS : STATUS_OBJECT_NAME_NOT_FOUND;
}

static PDEVICE_OBJECT lookup_device(const wchar_t *path, bool ref, bool *initializing)
{
    wchar_t name[NS_NAME_MAX];
    normalise(path, wcslen(path), name);
    PDEVICE_OBJECT dev = NULL;
    plat_lock_acquire(&ns_lock);
    for (int hops = 0; hops < 8 && !dev; hops++) { /* links may chain; bounded */
        ns_entry *e = find_locked(name, -1);
        if (!e || e->kind == NS_DRIVER) break;
        if (e->kind == NS_DEVICE) dev = e->object;
        else wcscpy(name, e->target);
    }
    /* Referenced before ns_lock is dropped: IoDeleteDevice unlinks the name under ns_lock before
     * it drops the device's creation reference, so a device still named here has refs >= 1. */
    if (dev && ref) plat_fetch_add32(&io_dev_priv(dev)->refs, 1);
    if (dev && initializing) {
        /* Decided here, under ns_lock, from state io writes under it: a device of a DriverEntry
         * still running is initializing even if its driver cleared the flag meanwhile — Flags
         * is not read while that driver may write it (a data race before). Outside DriverEntry
         * the driver clears the flag (NT): it is read under ns_lock, which orders it after a
         * clear the driver made before publishing the name it is opened by (its
         * IoCreateSymbolicLink, or a later IoCreateDevice); once seen clear, never read again. */
        io_device_priv *p = io_dev_priv(dev);
        if (p->open_state == IO_OPEN_BY_FLAG && !(dev->Flags & DO_DEVICE_INITIALIZING))
            p->open_state = IO_OPEN_READY;
        *initializing = p->open_state != IO_OPEN_READY;
    }
    plat_lock_release(&ns_lock);
    return dev;
}

PDEVICE_OBJECT io_lookup_device(const wchar_t *path) { return lookup_device(path, false, NULL); }

PDEVICE_OBJECT io_lookup_device_ref(const wchar_t *path) { return lookup_device(path, true, NULL); }

PDEVICE_OBJECT io_lookup_device_for_open(const wchar_t *path, bool *initializing)
{
    *initializing = false;
    return lookup_device(path, true, initializing);
}

PDRIVER_OBJECT io_lookup_driver(const wchar_t *name)
{
    wchar_t full[NS_NAME_MAX];
    if (wcsncmp(name, L"\\Driver\\", 8)) swprintf(full, NS_NAME_MAX, L"\\Driver\\%ls", name);
    else wcsncpy(full, name, NS_NAME_MAX - 1), full[NS_NAME_MAX - 1] = 0;
    plat_lock_acquire(&ns_lock);
    ns_entry *e = find_locked(full, NS_DRIVER);
    PDRIVER_OBJECT drv = e ? e->object : NULL;
    plat_lock_release(&ns_lock);
    return drv;
}
