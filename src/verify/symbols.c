/* Address → function name for reports ("in StartIo HelloStartIo"). Driver routines are usually
 * static functions, which dladdr() cannot name (they are not in the dynamic symbol table), so
 * the object's ELF .symtab is read once and searched; when that fails too the address is
 * printed with its module offset (addr2line-able). Only used while formatting a report. */
#include <dlfcn.h>
#include <elf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verify/verify.h"

typedef struct symfile {
    char path[256];
    unsigned char *data; /* whole file, or NULL when unreadable */
    size_t size;
    const Elf64_Sym *syms;
    size_t nsyms;
    const char *strs;
    size_t strs_size;
    int is_dyn; /* ET_DYN: symbol values are offsets from the load base */
} symfile;

/* sym_lock guards `files`; a leaf lock held only while reading/searching a symbol table. */
static plat_lockword sym_lock;
static symfile files[8];
static int n_files;

static void load_symtab(symfile *f)
{
    FILE *fp = fopen(f->path, "rb");
    if (!fp) return;
    if (fseek(fp, 0, SEEK_END) == 0) {
        long size = ftell(fp);
        if (size > (long)sizeof(Elf64_Ehdr) && fseek(fp, 0, SEEK_SET) == 0) {
            f->data = malloc((size_t)size);
            if (f->data && fread(f->data, 1, (size_t)size, fp) == (size_t)size) f->size = (size_t)size;
        }
    }
    fclose(fp);
    if (!f->size) return;
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)f->data;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) || eh->e_ident[EI_CLASS] != ELFCLASS64) return;
    if (eh->e_shoff + (size_t)eh->e_shnum * sizeof(Elf64_Shdr) > f->size) return;
    const Elf64_Shdr *sh = (const Elf64_Shdr *)(f->data + eh->e_shoff);
    f->is_dyn = eh->e_type == ET_DYN;
    for (int i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_type != SHT_SYMTAB || sh[i].sh_link >= eh->e_shnum) continue;
        const Elf64_Shdr *str = &sh[sh[i].sh_link];
        if (sh[i].sh_offset + sh[i].sh_size > f->size || str->sh_offset + str->sh_size > f->size) return;
        f->syms = (const Elf64_Sym *)(f->data + sh[i].sh_offset);
        f->nsyms = sh[i].sh_size / sizeof(Elf64_Sym);
        f->strs = (const char *)(f->data + str->sh_offset);
        f->strs_size = str->sh_size;
        return;
    }
}

static symfile *file_for(const char *path)
{
    for (int i = 0; i < n_files; i++)
        if (!strcmp(files[i].path, path)) return &files[i];
    if (n_files == (int)(sizeof files / sizeof files[0])) return NULL;
    symfile *f = &files[n_files++];
    snprintf(f->path, sizeof f->path, "%s", path);
    load_symtab(f);
    return f;
}

static bool lookup(symfile *f, uintptr_t value, char *buf, size_t n)
{
    const Elf64_Sym *best = NULL;
    for (size_t i = 0; f && i < f->nsyms; i++) {
        const Elf64_Sym *s = &f->syms[i];
        int type = ELF64_ST_TYPE(s->st_info);
        if ((type != STT_FUNC && type != STT_OBJECT) || !s->st_value || s->st_name >= f->strs_size) continue;
        if (value >= s->st_value && value < s->st_value + (s->st_size ? s->st_size : 1) &&
            (!best || s->st_value > best->st_value))
            best = s;
    }
    if (!best) return false;
    uintptr_t off = value - best->st_value;
    if (off) snprintf(buf, n, "%s+0x%lx", f->strs + best->st_name, (unsigned long)off);
    else snprintf(buf, n, "%s", f->strs + best->st_name);
    return true;
}

const char *vrf_symbol(const void *addr, char *buf, size_t n)
{
    Dl_info info;
    memset(&info, 0, sizeof info);
    if (!dladdr(addr, &info)) return snprintf(buf, n, "%p", addr), buf;
    if (info.dli_sname && info.dli_saddr == addr) return snprintf(buf, n, "%s", info.dli_sname), buf;
    /* The main program's link-map name is empty: read it through /proc/self/exe. */
    const char *path = info.dli_fname && info.dli_fname[0] ? info.dli_fname : "/proc/self/exe";
    bool found = false;
    vrf_lock(&sym_lock);
    symfile *f = file_for(path);
    if (f && f->syms) {
        uintptr_t value = (uintptr_t)addr - (f->is_dyn ? (uintptr_t)info.dli_fbase : 0);
        found = lookup(f, value, buf, n);
    }
    vrf_unlock(&sym_lock);
    if (found) return buf;
    if (info.dli_sname) return snprintf(buf, n, "%s", info.dli_sname), buf;
    snprintf(buf, n, "%p (%s+0x%lx)", addr, info.dli_fname ? info.dli_fname : "?",
             (unsigned long)((uintptr_t)addr - (uintptr_t)info.dli_fbase));
    return buf;
}
