/* err.h — library code reports failures into a caller's buffer (never exits):
 *   if (bad) { mu_set_err(err, errlen, "%s: tensor %s: ...", path, name); return -1; } */
#ifndef MU_ERR_H
#define MU_ERR_H
#include <stddef.h>
/* Formats into err[errlen] (no-op when err is NULL or errlen 0). */
void mu_set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#endif
