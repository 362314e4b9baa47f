#include "data/size.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <strings.h>

int dml_size_parse(const char *s, double *bytes)
{
    static const struct { const char *unit; double bytes; } units[] = {
        {"", 1 << 20}, {"b", 1}, {"k", 1 << 10}, {"kb", 1 << 10}, {"kib", 1 << 10},
        {"m", 1 << 20}, {"mb", 1 << 20}, {"mib", 1 << 20}, {"g", 1 << 30}, {"gb", 1 << 30},
        {"gib", 1 << 30}, {"t", 0x1p40}, {"tb", 0x1p40}, {"tib", 0x1p40}};
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno != 0 || !isfinite(v) || v < 0)
        return 0;
    while (*end == ' ')
        end++;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (!strcasecmp(end, units[i].unit)) {
            *bytes = v * units[i].bytes;
            return isfinite(*bytes);
        }
    return 0;
}
