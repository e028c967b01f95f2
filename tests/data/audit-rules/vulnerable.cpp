#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

int ping(const std::string &host) {
    std::string cmd = "ping -c 1 " + host;
    return std::system(cmd.c_str()); // expect: command-injection
}

void copy_name(char *dst, const std::string &src) {
    strcpy(dst, src.c_str()); // expect: memory-safety
}
