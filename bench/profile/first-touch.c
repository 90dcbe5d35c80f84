// First touch of anonymous memory, three rounds: ns per page (in a lazily backed VM guest the first round is far slower).
// gcc -O2 -o /tmp/first-touch bench/profile/first-touch.c && /tmp/first-touch
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <string.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(){size_t n=2UL<<30;for(int r=0;r<3;r++){char*p=mmap(0,n,PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS,-1,0);madvise(p,n,MADV_NOHUGEPAGE);double t=now();for(size_t i=0;i<n;i+=4096)p[i]=1;double d=now()-t;printf("round %d: %.0f ns/page\n",r,d*1e9/(n/4096));munmap(p,n);}}
