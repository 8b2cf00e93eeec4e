#include "plugin/elf_check.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/error.h"

/* The loader of this process maps only objects of its own class and machine. */
#if defined(__LP64__) || defined(_LP64)
typedef Elf64_Ehdr ehdr_t;
typedef Elf64_Phdr phdr_t;
typedef Elf64_Shdr shdr_t;
typedef Elf64_Sym sym_t;
#define SYM_TYPE(info) ELF64_ST_TYPE(info)
#define HOST_CLASS ELFCLASS64
#else
typedef Elf32_Ehdr ehdr_t;
typedef Elf32_Phdr phdr_t;
typedef Elf32_Shdr shdr_t;
typedef Elf32_Sym sym_t;
#define SYM_TYPE(info) ELF32_ST_TYPE(info)
#define HOST_CLASS ELFCLASS32
#endif
#if defined(__x86_64__)
#define HOST_MACHINE EM_X86_64
#elif defined(__aarch64__)
#define HOST_MACHINE EM_AARCH64
#elif defined(__powerpc64__)
#define HOST_MACHINE EM_PPC64
#elif defined(__riscv)
#define HOST_MACHINE EM_RISCV
#elif defined(__s390x__)
#define HOST_MACHINE EM_S390
#elif defined(__i386__)
#define HOST_MACHINE EM_386
#endif
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define HOST_DATA ELFDATA2LSB
#else
#define HOST_DATA ELFDATA2MSB
#endif

static const char *const fix = "rebuild or reinstall the plugin, or remove it from the plugin folder";

/* a + b <= limit, without overflow. */
static int fits(uint64_t a, uint64_t b, uint64_t limit)
{
    return a <= limit && b <= limit - a;
}

static int read_at(int fd, void *buf, size_t len, off_t at)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, (char *)buf + got, len - got, at + (off_t)got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        got += (size_t)n;
    }
    return 0;
}

static usi_error *check_headers(int fd, uint64_t size, const char *shown, ehdr_t *out)
{
    ehdr_t eh;
    unsigned char ident[EI_NIDENT] = {0};
    if (size < 4 || read_at(fd, ident, size < EI_NIDENT ? 4 : EI_NIDENT, 0) != 0 ||
        memcmp(ident, ELFMAG, SELFMAG) != 0)
        return usi_error_new(USI_ERR_INVALID,
                             "%s: not a shared object (no ELF header); remove it from the plugin folder",
                             shown);
    if (size < sizeof eh)
        return usi_error_new(USI_ERR_INVALID,
                             "%s: truncated ELF file (%llu bytes, shorter than its own header); %s",
                             shown, (unsigned long long)size, fix);
    if (ident[EI_CLASS] != HOST_CLASS)
        return usi_error_new(USI_ERR_INVALID, "%s: a %d-bit ELF file, this usi is %d-bit; %s", shown,
                             ident[EI_CLASS] == ELFCLASS32 ? 32 : 64, HOST_CLASS == ELFCLASS32 ? 32 : 64,
                             fix);
    if (ident[EI_DATA] != HOST_DATA)
        return usi_error_new(USI_ERR_INVALID, "%s: an ELF file of the other byte order; %s", shown, fix);
    if (read_at(fd, &eh, sizeof eh, 0) != 0)
        return usi_error_new(USI_ERR_IO, "%s: cannot read its ELF header: %s", shown, strerror(errno));
#ifdef HOST_MACHINE
    if (eh.e_machine != HOST_MACHINE)
        return usi_error_new(USI_ERR_INVALID,
                             "%s: built for another processor (ELF machine %u, this usi runs on %u); %s",
                             shown, (unsigned)eh.e_machine, (unsigned)HOST_MACHINE, fix);
#endif
    if (eh.e_type != ET_DYN)
        return usi_error_new(USI_ERR_INVALID,
                             "%s: an ELF file but not a shared object (type %u); build it with -shared -fPIC",
                             shown, (unsigned)eh.e_type);
    if (eh.e_phnum == 0 || eh.e_phnum == PN_XNUM || eh.e_phentsize != sizeof(phdr_t))
        return usi_error_new(USI_ERR_INVALID,
                             "%s: malformed ELF program header table (%u entries of %u bytes); %s",
                             shown, (unsigned)eh.e_phnum, (unsigned)eh.e_phentsize, fix);
    uint64_t ph_bytes = (uint64_t)eh.e_phnum * sizeof(phdr_t);
    if (!fits(eh.e_phoff, ph_bytes, size))
        return usi_error_new(USI_ERR_INVALID,
                             "%s: truncated: its program headers end at byte %llu, the file has %llu; %s",
                             shown, (unsigned long long)(eh.e_phoff + ph_bytes),
                             (unsigned long long)size, fix);
    phdr_t *ph = malloc(ph_bytes);
    if (!ph) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    usi_error *e = NULL;
    if (read_at(fd, ph, ph_bytes, (off_t)eh.e_phoff) != 0)
        e = usi_error_new(USI_ERR_IO, "%s: cannot read its program headers: %s", shown, strerror(errno));
    int loads = 0;
    for (unsigned i = 0; !e && i < eh.e_phnum; i++) {
        if (ph[i].p_type != PT_LOAD) continue;
        loads++;
        if (!fits(ph[i].p_offset, ph[i].p_filesz, size))
            e = usi_error_new(USI_ERR_INVALID,
                              "%s: truncated: loadable segment %u spans bytes %llu..%llu, the file has %llu; %s",
                              shown, i, (unsigned long long)ph[i].p_offset,
                              (unsigned long long)(ph[i].p_offset + ph[i].p_filesz),
                              (unsigned long long)size, fix);
        else if (ph[i].p_memsz < ph[i].p_filesz)
            e = usi_error_new(USI_ERR_INVALID,
                              "%s: malformed loadable segment %u (smaller in memory than on disk); %s",
                              shown, i, fix);
    }
    if (!e && !loads)
        e = usi_error_new(USI_ERR_INVALID, "%s: no loadable segment; %s", shown, fix);
    free(ph);
    if (e) return e;
    /* The loader never reads section headers, but a linker writes them last:
     * a table past the end is the surest sign of a cut file. */
    if (eh.e_shoff) {
        uint64_t n = eh.e_shnum ? eh.e_shnum : 1;
        if (!fits(eh.e_shoff, n * eh.e_shentsize, size))
            return usi_error_new(USI_ERR_INVALID,
                                 "%s: truncated: its section headers end at byte %llu, the file has %llu; %s",
                                 shown, (unsigned long long)(eh.e_shoff + n * eh.e_shentsize),
                                 (unsigned long long)size, fix);
    }
    *out = eh;
    return NULL;
}

/* A section's bytes, when they lie inside the file; NULL otherwise. */
static void *read_section(int fd, const shdr_t *sh, uint64_t size)
{
    if (!sh->sh_size || !fits(sh->sh_offset, sh->sh_size, size)) return NULL;
    void *p = malloc(sh->sh_size);
    if (p && read_at(fd, p, sh->sh_size, (off_t)sh->sh_offset) != 0) {
        free(p);
        p = NULL;
    }
    return p;
}

/* The dynamic symbol table as dlsym will search it: the symbols, the
 * section headers (for the flags of a symbol's section) and the names. */
typedef struct dynsyms {
    shdr_t *sh;
    size_t n_sh;
    sym_t *syms;
    size_t n_syms;
    char *names;
    size_t names_len;
} dynsyms;

static void dynsyms_free(dynsyms *d)
{
    free(d->sh);
    free(d->syms);
    free(d->names);
}

/* 0 with the table, or -1 when the file has no section headers to find it
 * by (the loader does not need them) or they make no sense. */
static int dynsyms_read(int fd, const ehdr_t *eh, uint64_t size, dynsyms *d)
{
    memset(d, 0, sizeof *d);
    if (!eh->e_shoff || !eh->e_shnum || eh->e_shentsize != sizeof(shdr_t)) return -1;
    uint64_t bytes = (uint64_t)eh->e_shnum * sizeof(shdr_t);
    if (!fits(eh->e_shoff, bytes, size) || !(d->sh = malloc(bytes))) return -1;
    d->n_sh = eh->e_shnum;
    if (read_at(fd, d->sh, bytes, (off_t)eh->e_shoff) != 0) return -1;
    for (size_t i = 0; i < d->n_sh; i++) {
        const shdr_t *s = &d->sh[i];
        if (s->sh_type != SHT_DYNSYM || s->sh_entsize != sizeof(sym_t) || s->sh_link >= d->n_sh ||
            d->sh[s->sh_link].sh_type != SHT_STRTAB)
            continue;
        d->syms = read_section(fd, s, size);
        d->names = read_section(fd, &d->sh[s->sh_link], size);
        if (!d->syms || !d->names) return -1;
        d->n_syms = s->sh_size / sizeof(sym_t);
        d->names_len = d->sh[s->sh_link].sh_size;
        return 0;
    }
    return -1;
}

/* The name of symbol i when it is defined here and its name is whole. */
static const char *defined_name(const dynsyms *d, size_t i)
{
    const sym_t *s = &d->syms[i];
    if (s->st_shndx == SHN_UNDEF || s->st_name >= d->names_len) return NULL;
    const char *name = d->names + s->st_name;
    return memchr(name, 0, d->names_len - s->st_name) ? name : NULL;
}

static const char *kind_of_symbol(int type)
{
    switch (type) {
    case STT_OBJECT: return "a variable (an ELF data object)";
    case STT_TLS: return "a thread-local variable";
    case STT_COMMON: return "an uninitialised variable (an ELF common symbol)";
    case STT_SECTION: return "a section symbol";
    case STT_FILE: return "a file symbol";
    default: return "a symbol outside the code";
    }
}

/* dlsym finds the entry by name whatever it is, and the host then jumps to
 * that address: a variable of that name (a function pointer kept in data)
 * would run its bytes as code. And a C++ file that defines the entry
 * without extern "C" exports a mangled name, which dlsym never finds. */
static usi_error *check_entry_symbol(int fd, const ehdr_t *eh, uint64_t size, const char *shown)
{
    dynsyms d;
    if (dynsyms_read(fd, eh, size, &d) != 0) {
        dynsyms_free(&d);
        return NULL; /* dlsym will still find it, or say it is missing */
    }
    static const char mangled_prefix[] = "_Z16usi_plugin_entry";
    const sym_t *entry = NULL;
    const char *mangled = NULL;
    for (size_t i = 0; i < d.n_syms && !entry; i++) {
        const char *name = defined_name(&d, i);
        if (!name) continue;
        if (!strcmp(name, USI_PLUGIN_ENTRY_SYMBOL)) entry = &d.syms[i];
        else if (!mangled && !strncmp(name, mangled_prefix, sizeof mangled_prefix - 1)) mangled = name;
    }
    usi_error *e = NULL;
    if (entry) {
        int type = SYM_TYPE(entry->st_info);
        /* Hand-written assembly may leave a function untyped: then its
         * section says whether it is code. */
        int code = type == STT_FUNC || type == STT_GNU_IFUNC ||
                   (type == STT_NOTYPE && entry->st_shndx < d.n_sh &&
                    (d.sh[entry->st_shndx].sh_flags & SHF_EXECINSTR));
        if (!code)
            e = usi_error_new(USI_ERR_INVALID,
                              "%s: its '%s' is %s, not a function; it must be a function: "
                              "USI_PLUGIN_EXPORT usi_error *usi_plugin_entry(usi_negotiate *n) { ... } "
                              "(or USI_DEFINE_PLUGIN)",
                              shown, USI_PLUGIN_ENTRY_SYMBOL, kind_of_symbol(type));
    } else if (mangled) {
        e = usi_error_new(USI_ERR_INVALID,
                          "%s: no '%s' symbol, but a C++ one, '%s': the file was compiled as C++ without "
                          "extern \"C\"; include usi/plugin.h of this SDK (it declares the entry "
                          "extern \"C\") or define the entry inside extern \"C\" { }",
                          shown, USI_PLUGIN_ENTRY_SYMBOL, mangled);
    }
    dynsyms_free(&d);
    return e;
}

usi_error *usi_elf_check(const char *path, const char *shown)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return usi_error_new(USI_ERR_IO, "%s: %s", shown, strerror(errno));
    struct stat st;
    usi_error *e = NULL;
    if (fstat(fd, &st) != 0)
        e = usi_error_new(USI_ERR_IO, "%s: %s", shown, strerror(errno));
    else {
        ehdr_t eh = {0};
        e = check_headers(fd, (uint64_t)st.st_size, shown, &eh);
        if (!e) e = check_entry_symbol(fd, &eh, (uint64_t)st.st_size, shown);
    }
    close(fd);
    return e;
}
