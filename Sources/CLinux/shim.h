// Linux and GNU calls that Swift's Glibc module leaves out: epoll, eventfd, accept4 and
// thread names for guidond's event loops; timerfd (the Redis store's deadlines on a loop);
// memmem for the benchmark client.
#include <pthread.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>

int accept4(int sockfd, struct sockaddr *addr, socklen_t *addrlen, int flags);
int pthread_setname_np(pthread_t thread, const char *name);
void *memmem(const void *haystack, size_t haystacklen, const void *needle, size_t needlelen);
