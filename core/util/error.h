/* Errors: one message, one code, made and freed by the core. NULL = success. */
#ifndef USI_CORE_ERROR_H
#define USI_CORE_ERROR_H

#include <usi/plugin.h>

struct usi_error {
    int32_t code;    /* USI_ERR_* */
    char *message;
};

usi_error *usi_error_new(int32_t code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prefix e's message with a context ("file.cfg:12: ") and return e. */
usi_error *usi_error_prefix(usi_error *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void usi_error_free(usi_error *e);
const char *usi_error_message(const usi_error *e);

/* An internal check that fails with an error naming this file and line. */
#define USI_CHECK(cond, code, ...)                                            \
    do {                                                                      \
        if (!(cond))                                                          \
            return usi_error_prefix(usi_error_new((code), __VA_ARGS__),       \
                                    "%s:%d: ", __FILE__, __LINE__);           \
    } while (0)

/* Return e from the enclosing function when it is an error. */
#define USI_TRY(expr)                                                         \
    do {                                                                      \
        usi_error *usi_try_err_ = (expr);                                     \
        if (usi_try_err_) return usi_try_err_;                                \
    } while (0)

#endif
