/* Many connections, one request in flight on each: what an application's workers do.
 *
 *   cc -O2 -o many many.c && ./many SOCKET CONNECTIONS REQUESTS [LINE]
 *
 * Keeps one request (LINE, default an eval of new-checkout) in flight on each of CONNECTIONS
 * connections from one poll(2) loop, REQUESTS in all, and prints the rate. Used to count
 * guidond's system calls and context switches per request (docs/PERFORMANCE.md). */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec/1e9;}
int main(int argc,char**argv){
  const char*path=argv[1];int conns=atoi(argv[2]);long total=atol(argv[3]);
  const char*line=argc>4?argv[4]:"{\"op\":\"eval\",\"flag\":\"new-checkout\",\"context\":{\"targetingKey\":\"u1\",\"tier\":\"gold\"}}\n";
  size_t len=strlen(line);
  struct pollfd*p=calloc(conns,sizeof*p);
  for(int i=0;i<conns;i++){int fd=socket(AF_UNIX,SOCK_STREAM,0);struct sockaddr_un a={.sun_family=AF_UNIX};strncpy(a.sun_path,path,107);
    if(connect(fd,(void*)&a,sizeof a)){perror("connect");return 1;}p[i].fd=fd;p[i].events=POLLIN;}
  long sent=0,got=0;char buf[65536];
  double t0=now();
  for(int i=0;i<conns&&sent<total;i++){write(p[i].fd,line,len);sent++;}
  while(got<total){
    int n=poll(p,conns,5000);if(n<=0){fprintf(stderr,"timeout\n");return 1;}
    for(int i=0;i<conns;i++) if(p[i].revents){
      ssize_t r=recv(p[i].fd,buf,sizeof buf,0);if(r<=0){fprintf(stderr,"closed\n");return 1;}
      for(ssize_t k=0;k<r;k++) if(buf[k]=='\n'){got++; if(sent<total){write(p[i].fd,line,len);sent++;}}
    }
  }
  double t=now()-t0;printf("%ld requests in %.3f s: %.0f/s\n",got,t,got/t);return 0;}
