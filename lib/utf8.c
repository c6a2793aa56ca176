/* utf8.c — UTF-8 validation (utf8.h). */
#include "utf8.h"
#include <stdio.h>
#include <string.h>

size_t mu_utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;
    if (c < 0xE0) return (n >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c < 0xF0) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0;          /* overlong */
        if (c == 0xED && s[1] >= 0xA0) return 0;         /* surrogate */
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
        if (c == 0xF0 && s[1] < 0x90) return 0;          /* overlong */
        if (c == 0xF4 && s[1] >= 0x90) return 0;         /* above U+10FFFF */
        return 4;
    }
    return 0;
}

int mu_utf8_valid(const char *text, size_t n, size_t *bad)
{
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0, k; i < n; i += k)
        if (!(k = mu_utf8_seq_len(s + i, n - i))) {
            if (bad) *bad = i;
            return 0;
        }
    return 1;
}

/* The escape of control or invalid byte c into e[5]: \n \r \t or \xHH. */
static void escape_byte(unsigned char c, char *e)
{
    if (c == '\n') strcpy(e, "\\n");
    else if (c == '\r') strcpy(e, "\\r");
    else if (c == '\t') strcpy(e, "\\t");
    else snprintf(e, 5, "\\x%02x", c);
}

char *mu_utf8_printable(char *dst, size_t cap, const char *src)
{
    const unsigned char *s = (const unsigned char *)src;
    size_t n = strlen(src), o = 0;
    if (!cap) return dst;
    for (size_t i = 0; i < n;) {
        char e[5];
        size_t k = s[i] < 0x20 || s[i] == 0x7f ? 0 : mu_utf8_seq_len(s + i, n - i);
        if (k == 2 && s[i] == 0xC2 && s[i + 1] < 0xA0) k = 0;   /* C1 controls (CSI...) */
        const char *piece = k ? src + i : e;
        size_t len = k;
        if (!k) { escape_byte(s[i], e); len = strlen(e); }
        if (o + len >= cap) break;
        memcpy(dst + o, piece, len);
        o += len;
        i += k ? k : 1;
    }
    dst[o] = 0;
    return dst;
}
