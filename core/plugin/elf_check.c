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
#define HOST_CLASS ELFCLASS64
#else
typedef Elf32_Ehdr ehdr_t;
typedef Elf32_Phdr phdr_t;
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

static usi_error *check_headers(int fd, uint64_t size, const char *shown)
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
    return NULL;
}

usi_error *usi_elf_check(const char *path, const char *shown)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return usi_error_new(USI_ERR_IO, "%s: %s", shown, strerror(errno));
    struct stat st;
    usi_error *e = NULL;
    if (fstat(fd, &st) != 0)
        e = usi_error_new(USI_ERR_IO, "%s: %s", shown, strerror(errno));
    else
        e = check_headers(fd, (uint64_t)st.st_size, shown);
    close(fd);
    return e;
}
