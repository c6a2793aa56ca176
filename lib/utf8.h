/* utf8.h — UTF-8 validation shared by the tokenizer, the data set reader and the tools'
 * messages (strict: no overlong forms, surrogates or code points above U+10FFFF). */
#ifndef MU_UTF8_H
#define MU_UTF8_H
#include <stddef.h>

/* Length (1-4) of the valid UTF-8 sequence at s, n bytes left (n >= 1); 0 if invalid. */
size_t mu_utf8_seq_len(const unsigned char *s, size_t n);
/* 1 if [s, s+n) is valid UTF-8, else 0 with *bad (may be NULL) set to the offset of the
 * first bad byte. */
int mu_utf8_valid(const char *s, size_t n, size_t *bad);
/* Copies the NUL-terminated src into dst[cap] as one printable line: the bytes of control
 * characters (C0, DEL, C1) and of invalid UTF-8 become \n, \r, \t or \xHH; a cut never
 * splits an escape or a character. Returns dst. */
char *mu_utf8_printable(char *dst, size_t cap, const char *src);
#endif
