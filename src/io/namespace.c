/* The object namespace: \Device\X, \Driver\X and symbolic links in \?? (\DosDevices is an
 * alias). A list under one leaf lock; nothing is called while it is held.
 *
 * The lock also decides when a driver may be unloaded (NT's "Unload Pending"): an open takes its
 * reference on the device (DEVICE_OBJECT.ReferenceCount, counted per driver in `opens`) in the
 * same hold as the name lookup and the driver's unload state check, and the reference is dropped
 * under it too, so "no open holds or is taking a reference" and "the unload may run" are one
 * decision, made by exactly one thread (io_ns_request_unload / io_ns_drop_open). */
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
    /* Drivers, under ns_lock: */
    int32_t opens;               /* open references on its devices (sum of their ReferenceCount) */
    int unload;                  /* NS_LOADED, NS_UNLOAD_PENDING, NS_UNLOADING */
} ns_entry;

/* ns_entry.unload: a driver's unload state. It only moves forward. */
enum { NS_LOADED, NS_UNLOAD_PENDING, NS_UNLOADING };

static plat_lockword ns_lock;
static ns_entry *ns_head;

/* An explored execution may end with a thread inside ns_lock (closes take it in the racing
 * part of a scenario: io_ns_drop_open): the lock is reset with the list. */
static void ns_reset(void)
{
    plat_lock_init(&ns_lock);
    ns_head = NULL;
}

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

bool io_ns_request_unload(PDRIVER_OBJECT drv)
{
    plat_lock_acquire(&ns_lock);
    ns_entry *e = driver_entry_locked(drv);
    bool now = false;
    if (e && e->unload == NS_LOADED) {
        /* opens cannot grow once the state leaves NS_LOADED (io_open_device_ref checks it in
         * the hold that would add one), so 0 here, or at io_ns_drop_open's last drop, is final. */
        e->unload = e->opens ? NS_UNLOAD_PENDING : NS_UNLOADING;
        now = e->unload == NS_UNLOADING;
    } /* else a second request, or a driver already unloaded (no entry): nothing to do */
    plat_lock_release(&ns_lock);
    return now;
}

bool io_ns_driver_unloading(PDRIVER_OBJECT drv)
{
    plat_lock_acquire(&ns_lock);
    ns_entry *e = driver_entry_locked(drv);
    bool unloading = e && e->unload != NS_LOADED;
    plat_lock_release(&ns_lock);
    return unloading;
}

bool io_ns_drop_open(PDEVICE_OBJECT dev)
{
    plat_lock_acquire(&ns_lock);
    /* Atomic as well as locked: drivers may read ReferenceCount (a read-only member) any time. */
    plat_fetch_add32((volatile int32_t *)&dev->ReferenceCount, -1);
    /* The entry is there: it is removed only after NS_UNLOADING, which needs opens == 0. */
    ns_entry *e = driver_entry_locked(dev->DriverObject);
    bool now = false;
    if (e && --e->opens == 0 && e->unload == NS_UNLOAD_PENDING) {
        e->unload = NS_UNLOADING; /* claimed in this hold: no other drop or request can see PENDING */
        now = true;
    }
    plat_lock_release(&ns_lock);
    return now;
}

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

/* The device a path names (links followed), ns_lock held. */
static PDEVICE_OBJECT resolve_locked(const wchar_t *path)
{
    wchar_t name[NS_NAME_MAX];
    normalise(path, wcslen(path), name);
    PDEVICE_OBJECT dev = NULL;
    for (int hops = 0; hops < 8 && !dev; hops++) { /* links may chain; bounded */
        ns_entry *e = find_locked(name, -1);
        if (!e || e->kind == NS_DRIVER) break;
        if (e->kind == NS_DEVICE) dev = e->object;
        else wcscpy(name, e->target);
    }
    return dev;
}

static PDEVICE_OBJECT lookup_device(const wchar_t *path, bool ref)
{
    plat_lock_acquire(&ns_lock);
    PDEVICE_OBJECT dev = resolve_locked(path);
    /* Referenced before ns_lock is dropped: IoDeleteDevice unlinks the name under ns_lock before
     * it drops the device's creation reference, so a device still named here has refs >= 1. */
    if (dev && ref) plat_fetch_add32(&io_dev_priv(dev)->refs, 1);
    plat_lock_release(&ns_lock);
    return dev;
}

PDEVICE_OBJECT io_lookup_device(const wchar_t *path) { return lookup_device(path, false); }

PDEVICE_OBJECT io_lookup_device_ref(const wchar_t *path) { return lookup_device(path, true); }

/* Still initializing? (ns_lock held.) Decided here from state io writes under ns_lock: a device
 * of a DriverEntry still running is initializing even if its driver cleared the flag meanwhile
 * — Flags is not read while that driver may write it (a data race before). Outside DriverEntry
 * the driver clears the flag (NT): it is read under ns_lock, which orders it after a clear the
 * driver made before publishing the name it is opened by (its IoCreateSymbolicLink, or a later
 * IoCreateDevice); once seen clear, never read again. */
static bool initializing_locked(PDEVICE_OBJECT dev)
{
    io_device_priv *p = io_dev_priv(dev);
    if (p->open_state == IO_OPEN_BY_FLAG && !(dev->Flags & DO_DEVICE_INITIALIZING)) p->open_state = IO_OPEN_READY;
    return p->open_state != IO_OPEN_READY;
}

NTSTATUS io_open_device_ref(const wchar_t *path, PDEVICE_OBJECT *out)
{
    *out = NULL;
    plat_lock_acquire(&ns_lock);
    PDEVICE_OBJECT dev = resolve_locked(path);
    ns_entry *drv = dev ? driver_entry_locked(dev->DriverObject) : NULL;
    NTSTATUS st = STATUS_SUCCESS;
    if (!dev) st = STATUS_OBJECT_NAME_NOT_FOUND;
    /* NT refuses the open (Microsoft documents that it fails, not the status); irpkit answers
     * STATUS_NO_SUCH_DEVICE (docs/io.md). */
    else if (initializing_locked(dev)) st = STATUS_NO_SUCH_DEVICE;
    /* Unload pending (or done, its devices left behind): "no additional references can be made
     * to the driver's device objects" (Unload Routine Environment); the status is not
     * documented: the one an unopenable device already gets. Checked in the hold that takes
     * the reference below, so an unload decided after this sees the reference. */
    else if (!drv || drv->unload != NS_LOADED) st = STATUS_NO_SUCH_DEVICE;
    /* One open per exclusive device. DO_EXCLUSIVE is io's, set before the name was published. */
    else if ((dev->Flags & DO_EXCLUSIVE) && plat_load32((volatile int32_t *)&dev->ReferenceCount))
        st = STATUS_ACCESS_DENIED;
    if (NT_SUCCESS(st)) {
        plat_fetch_add32((volatile int32_t *)&dev->ReferenceCount, 1); /* dropped by io_ns_drop_open */
        drv->opens++;
        plat_fetch_add32(&io_dev_priv(dev)->refs, 1); /* named here, so refs >= 1 (lookup_device) */
        *out = dev;
    }
    plat_lock_release(&ns_lock);
    return st;
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
