#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/md5.h>

int ping(const char *host) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "ping -c 1 %s", host);
    return system(cmd); // expect: command-injection
}

int find_user(char *query, size_t n, const char *name) {
    return snprintf(query, n, "SELECT * FROM users WHERE name = '%s'", name); // expect: injection
}

FILE *open_upload(const char *name) {
    char path[512];
    sprintf(path, "/srv/files/%s", name); // expect: path-traversal
    return fopen(path, "rb");
}

void copy_name(char *dst, const char *src) {
    strcpy(dst, src); // expect: memory-safety
}

void read_line(char *buf) {
    gets(buf); // expect: memory-safety
}

void digest(const unsigned char *data, size_t n, unsigned char *out) {
    MD5(data, n, out); // expect: weak-crypto
}

int new_token(void) {
    return rand(); // expect: weak-crypto
}
