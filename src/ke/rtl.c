/* Run-time library pieces drivers use: counted strings, memory compare, DbgPrint, ASSERT. */
#include <stdarg.h>
#include <stdio.h>
#include <wctype.h>

#include "ke/ke.h"

VOID RtlInitUnicodeString(PUNICODE_STRING DestinationString, PCWSTR SourceString)
{
    DestinationString->Buffer = (PWSTR)SourceString;
    if (!SourceString) {
        DestinationString->Length = DestinationString->MaximumLength = 0;
        return;
    }
    size_t bytes = wcslen(SourceString) * sizeof(WCHAR);
    if (bytes > 0xFFFC) bytes = 0xFFFC - (0xFFFC % sizeof(WCHAR)); /* USHORT counts */
    DestinationString->Length = (USHORT)bytes;
    DestinationString->MaximumLength = (USHORT)(bytes + sizeof(WCHAR));
}

static WCHAR fold(WCHAR c, BOOLEAN ci) { return ci ? (WCHAR)towupper((wint_t)c) : c; }

LONG RtlCompareUnicodeString(PCUNICODE_STRING a, PCUNICODE_STRING b, BOOLEAN ci)
{
    size_t na = a->Length / sizeof(WCHAR), nb = b->Length / sizeof(WCHAR);
    size_t n = na < nb ? na : nb;
    for (size_t i = 0; i < n; i++) {
        WCHAR x = fold(a->Buffer[i], ci), y = fold(b->Buffer[i], ci);
        if (x != y) return x < y ? -1 : 1;
    }
    return na == nb ? 0 : (na < nb ? -1 : 1);
}

BOOLEAN RtlEqualUnicodeString(PCUNICODE_STRING a, PCUNICODE_STRING b, BOOLEAN ci)
{
    return (BOOLEAN)(a->Length == b->Length && RtlCompareUnicodeString(a, b, ci) == 0);
}

VOID RtlCopyUnicodeString(PUNICODE_STRING dst, PCUNICODE_STRING src)
{
    if (!src || !src->Buffer) {
        dst->Length = 0;
        return;
    }
    USHORT n = src->Length < dst->MaximumLength ? src->Length : dst->MaximumLength;
    memcpy(dst->Buffer, src->Buffer, n);
    dst->Length = n;
    if (n + sizeof(WCHAR) <= dst->MaximumLength) dst->Buffer[n / sizeof(WCHAR)] = 0;
}

SIZE_T RtlCompareMemory(const VOID *a, const VOID *b, SIZE_T n)
{
    const UCHAR *x = a, *y = b;
    SIZE_T i = 0;
    while (i < n && x[i] == y[i]) i++;
    return i;
}

static ULONG vdbg(PCSTR fmt, va_list ap)
{
    char line[1024];
    vsnprintf(line, sizeof line, fmt, ap);
    fputs(line, stderr);
    return 0;
}

ULONG DbgPrint(PCSTR Format, ...)
{
    va_list ap;
    va_start(ap, Format);
    ULONG r = vdbg(Format, ap);
    va_end(ap);
    return r;
}

ULONG DbgPrintEx(ULONG ComponentId, ULONG Level, PCSTR Format, ...)
{
    (void)ComponentId;
    (void)Level;
    va_list ap;
    va_start(ap, Format);
    ULONG r = vdbg(Format, ap);
    va_end(ap);
    return r;
}

VOID DbgBreakPoint(VOID)
{
    ke_bugcheck(IRPK_BUGCHECK_ASSERTION_FAILURE, 0, 0, 0, 0, "DbgBreakPoint called by driver code.");
}

VOID RtlAssert(PVOID FailedAssertion, PVOID FileName, ULONG LineNumber, PCHAR Message)
{
    ke_bugcheck(IRPK_BUGCHECK_ASSERTION_FAILURE, (uintptr_t)LineNumber, 0, 0, 0,
                "ASSERT(%s) failed at %s:%u%s%s", (const char *)FailedAssertion,
                (const char *)FileName, (unsigned)LineNumber, Message ? ": " : "",
                Message ? Message : "");
}
