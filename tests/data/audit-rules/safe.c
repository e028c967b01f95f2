#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

int ping(const char *host) {
    char *const argv[] = {"ping", "-c", "1", (char *)host, NULL};
    return execvp("ping", argv);
}

int find_user(void *db, const char *name) {
    const char *query = "SELECT * FROM users WHERE name = ?";
    (void)db;
    (void)name;
    return (int)strlen(query);
}

FILE *open_upload(const char *name) {
    if (strchr(name, '/') != NULL || strcmp(name, "..") == 0) {
        return NULL;
    }
    return fopen(name, "rb");
}

void copy_name(char *dst, size_t n, const char *src) {
    snprintf(dst, n, "%s", src);
}

void read_line(char *buf, int n) {
    fgets(buf, n, stdin);
}

int digest(const unsigned char *data, size_t n, unsigned char *out, unsigned int *len) {
    return EVP_Digest(data, n, out, len, EVP_sha256(), NULL);
}

int new_token(unsigned char *buf, int n) {
    return RAND_bytes(buf, n);
}
