/* Object manager (internal): typed, reference-counted objects and the process handle table.
 *
 * Every object irpkit hands out by pointer and by handle — thread objects, events, file
 * objects — is created here. An object is freed when its last reference goes away; the last
 * *handle* closing runs the type's close callback first (for files: IRP_MJ_CLEANUP). */
#ifndef IRPK_OB_H
#define IRPK_OB_H

#include <wdm.h>

struct _OBJECT_TYPE {
    const char *name; /* "Thread", "Event", "File", … */
    /* Last handle closed (object still referenced). May block. */
    void (*last_handle_closed)(void *body);
    /* Last reference gone; release what the body owns (the memory itself is freed by ob). */
    void (*delete_body)(void *body);
};
typedef struct _OBJECT_TYPE ob_type;

/* A new object with one reference held by the caller; body zeroed. NULL on allocation failure. */
void *ob_create(const ob_type *type, size_t body_size);
/* The type of an object created by ob_create (NULL for other pointers is NOT detected). */
const ob_type *ob_type_of(const void *body);
/* Current reference / handle counts (diagnostics, tests). */
LONG ob_refcount(const void *body);
LONG ob_handle_count(const void *body);

/* Create a handle for the object (takes a new reference). STATUS_INSUFFICIENT_RESOURCES when
 * the table cannot grow. */
NTSTATUS ob_insert_handle(void *body, ACCESS_MASK access, ULONG attributes, PHANDLE handle);
/* Look up a handle and take a reference: STATUS_INVALID_HANDLE or STATUS_OBJECT_TYPE_MISMATCH
 * (type NULL = any). *granted receives the handle's access mask when non-NULL. */
NTSTATUS ob_reference_handle(HANDLE handle, const ob_type *type, void **body, ACCESS_MASK *granted);
/* Remove the handle; runs last_handle_closed when it was the object's last handle; drops the
 * handle's reference. STATUS_INVALID_HANDLE when not open. */
NTSTATUS ob_close_handle(HANDLE handle);
/* Number of open handles in the table (leak checks). */
LONG ob_open_handles(void);

#endif
