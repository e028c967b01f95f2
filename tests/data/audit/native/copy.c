#include <string.h>

void greet(const char *name)
{
    char buf[16];
    strcpy(buf, name);
    puts(buf);
}
