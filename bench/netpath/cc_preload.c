/* LD_PRELOAD library for the benchmark's client namespace: every TCP socket the process opens
 * sends with the congestion control named by DROPPR_TCP_CC (default "cubic"), whatever the
 * kernel's default (BBR on the bench machines, which barely reacts to random loss, whereas the
 * hosts our users upload from mostly send with CUBIC). Wraps socket() only; the kernel keeps
 * the choice per socket, so accepted and connected sockets need nothing more.
 * Built by bench/netpath.mjs with gcc; see docs/BENCHMARKS.md. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*socket_fn)(int, int, int);

int socket(int domain, int type, int protocol) {
  static socket_fn real_socket;
  if (!real_socket) real_socket = (socket_fn)dlsym(RTLD_NEXT, "socket");
  int fd = real_socket(domain, type, protocol);
  int is_tcp = (type & 0xf) == SOCK_STREAM && (protocol == 0 || protocol == IPPROTO_TCP);
  if (fd >= 0 && is_tcp && (domain == AF_INET || domain == AF_INET6)) {
    const char *cc = getenv("DROPPR_TCP_CC");
    if (!cc || !*cc) cc = "cubic";
    /* A failure leaves the kernel default; the bench's self-check reads the choice back. */
    setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, cc, (socklen_t)strlen(cc));
  }
  return fd;
}
