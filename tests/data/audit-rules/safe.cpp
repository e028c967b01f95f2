#include <cstdio>
#include <string>
#include <unistd.h>

int ping(const std::string &host) {
    const char *argv[] = {"ping", "-c", "1", host.c_str(), nullptr};
    return execvp("ping", const_cast<char *const *>(argv));
}

void copy_name(char *dst, std::size_t n, const std::string &src) {
    std::snprintf(dst, n, "%s", src.c_str());
}
