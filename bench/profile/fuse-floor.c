// The floor of the FUSE + loop path: the least a FUSE server can do per request, in C.
//
// Serves one file, "disk", of SIZE bytes over /dev/fuse, negotiated exactly as the Java frontend
// (frontend.fuse.FuseServer) negotiates it: FUSE 7.38 layouts, ASYNC_READ | BIG_WRITES | ASYNC_DIO |
// MAX_PAGES | PARALLEL_DIROPS, max_write 1 MiB, max_background 256, WORKERS threads reading one
// /dev/fuse descriptor. A READ is one pread of the first leg into the reply and one write of the
// reply; a WRITE is one pwrite per leg (one after the other, as the mirror's local legs) and a
// reply. No tags, no journal, no range lock, no intent record: what is left is what FUSE + loop
// costs by itself, so bench/fio-compare.sh --floor can show how close the Java daemon is to it
// (single leg against the floor's single leg; mirror against the floor's two-leg "mirror").
// Not a product: no discard, no error recovery, no watchdog.
//
//   fuse-floor MOUNTDIR SIZE LEG [LEG2] [WORKERS]
//
// Prints "ready" once the kernel's INIT is answered (MOUNTDIR/disk can then be given to
// `losetup --direct-io=on`), serves until its standard input closes, then unmounts (lazily: the
// loop device must be detached first) and exits. Build: cc -O2 -pthread -o fuse-floor fuse-floor.c
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_WRITE (1 << 20)
#define BUF_SIZE (MAX_WRITE + 4096)
#define FILE_ID 2

static int fuse_fd = -1;
static int legs[2] = {-1, -1};
static int nlegs;
static uint64_t size;
static volatile int init_done;
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t init_cond = PTHREAD_COND_INITIALIZER;

static void reply(uint64_t unique, int error, void *out, size_t len) {
  struct fuse_out_header *h = out;
  h->len = sizeof(*h) + len;
  h->error = -error;
  h->unique = unique;
  if (write(fuse_fd, out, h->len) < 0 && errno != ENOENT) perror("fuse-floor: write /dev/fuse");
}

static void attr(struct fuse_attr *a, uint64_t node) {
  int dir = node == FUSE_ROOT_ID;
  memset(a, 0, sizeof(*a));
  a->ino = node;
  a->size = dir ? 0 : size;
  a->blocks = dir ? 0 : (size + 511) / 512;
  a->mode = dir ? S_IFDIR | 0755 : S_IFREG | 0600;
  a->nlink = dir ? 2 : 1;
  a->blksize = 4096;
}

static void serve(char *in, char *out) {
  struct fuse_in_header *ih = (void *)in;
  void *arg = in + sizeof(*ih);
  char *body = out + sizeof(struct fuse_out_header);
  uint64_t u = ih->unique;
  switch (ih->opcode) {
  case FUSE_INIT: {
    struct fuse_init_in *ii = arg;
    struct fuse_init_out *io = (void *)body;
    memset(io, 0, sizeof(*io));
    io->major = FUSE_KERNEL_VERSION;
    io->minor = ii->minor < FUSE_KERNEL_MINOR_VERSION ? ii->minor : FUSE_KERNEL_MINOR_VERSION;
    io->max_readahead = ii->max_readahead;
    io->flags = ii->flags & (FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_ASYNC_DIO | FUSE_MAX_PAGES | FUSE_PARALLEL_DIROPS);
    io->max_background = 256;
    io->congestion_threshold = 192;
    io->max_write = MAX_WRITE;
    io->time_gran = 1;
    io->max_pages = MAX_WRITE / 4096;
    reply(u, 0, out, sizeof(*io));
    pthread_mutex_lock(&init_lock);
    init_done = 1;
    pthread_cond_broadcast(&init_cond);
    pthread_mutex_unlock(&init_lock);
    return;
  }
  case FUSE_LOOKUP: {
    if (ih->nodeid != FUSE_ROOT_ID || strcmp(arg, "disk") != 0) {
      reply(u, ENOENT, out, 0);
      return;
    }
    struct fuse_entry_out *e = (void *)body;
    memset(e, 0, sizeof(*e));
    e->nodeid = FILE_ID;
    e->generation = 1;
    e->entry_valid = e->attr_valid = 3600;
    attr(&e->attr, FILE_ID);
    reply(u, 0, out, sizeof(*e));
    return;
  }
  case FUSE_GETATTR:
  case FUSE_SETATTR: {
    struct fuse_attr_out *a = (void *)body;
    memset(a, 0, sizeof(*a));
    a->attr_valid = 3600;
    attr(&a->attr, ih->nodeid);
    reply(u, 0, out, sizeof(*a));
    return;
  }
  case FUSE_OPEN:
  case FUSE_OPENDIR: {
    struct fuse_open_out *o = (void *)body;
    memset(o, 0, sizeof(*o));
    reply(u, 0, out, sizeof(*o));
    return;
  }
  case FUSE_READ: {
    struct fuse_read_in *r = arg;
    ssize_t got = pread(legs[0], body, r->size, r->offset);
    if (got < 0) reply(u, errno, out, 0);
    else reply(u, 0, out, got);
    return;
  }
  case FUSE_WRITE: {
    struct fuse_write_in *w = arg;
    const char *data = (const char *)(w + 1);
    for (int i = 0; i < nlegs; i++) {
      if (pwrite(legs[i], data, w->size, w->offset) != (ssize_t)w->size) {
        reply(u, EIO, out, 0);
        return;
      }
    }
    struct fuse_write_out *wo = (void *)body;
    memset(wo, 0, sizeof(*wo));
    wo->size = w->size;
    reply(u, 0, out, sizeof(*wo));
    return;
  }
  case FUSE_FSYNC:
    for (int i = 0; i < nlegs; i++) fdatasync(legs[i]);
    reply(u, 0, out, 0);
    return;
  case FUSE_STATFS: {
    struct fuse_statfs_out *s = (void *)body;
    memset(s, 0, sizeof(*s));
    s->st.bsize = s->st.frsize = 4096;
    s->st.namelen = 255;
    reply(u, 0, out, sizeof(*s));
    return;
  }
  case FUSE_FLUSH:
  case FUSE_RELEASE:
  case FUSE_RELEASEDIR:
  case FUSE_ACCESS:
    reply(u, 0, out, 0);
    return;
  case FUSE_READDIR:
    reply(u, 0, out, 0); // an empty directory listing; the file is reached by name
    return;
  case FUSE_FORGET:
  case FUSE_BATCH_FORGET:
  case FUSE_INTERRUPT:
    return; // no reply
  default:
    reply(u, ENOSYS, out, 0);
  }
}

static void *worker(void *unused) {
  (void)unused;
  char *in = aligned_alloc(4096, BUF_SIZE), *out = aligned_alloc(4096, BUF_SIZE);
  if (!in || !out) {
    perror("fuse-floor: buffers");
    exit(1);
  }
  for (;;) {
    ssize_t n = read(fuse_fd, in, BUF_SIZE);
    if (n < 0) {
      if (errno == EINTR || errno == ENOENT || errno == EAGAIN) continue;
      if (errno == ENODEV) return NULL; // unmounted
      perror("fuse-floor: read /dev/fuse");
      exit(1);
    }
    serve(in, out);
  }
}

int main(int argc, char **argv) {
  if (argc < 4 || argc > 6) {
    fprintf(stderr, "usage: fuse-floor MOUNTDIR SIZE LEG [LEG2] [WORKERS]\n");
    return 2;
  }
  const char *mnt = argv[1];
  size = strtoull(argv[2], NULL, 0);
  int workers = 8;
  for (int i = 3; i < argc; i++) {
    char *end;
    long w = strtol(argv[i], &end, 10);
    if (*end == 0 && i == argc - 1 && i > 3) {
      workers = (int)w;
      break;
    }
    if ((legs[nlegs] = open(argv[i], O_RDWR | O_CLOEXEC)) < 0) {
      fprintf(stderr, "fuse-floor: cannot open %s: %s\n", argv[i], strerror(errno));
      return 1;
    }
    nlegs++;
  }
  if (size == 0 || size % 4096 || workers < 1) {
    fprintf(stderr, "fuse-floor: SIZE must be a positive multiple of 4096, WORKERS at least 1\n");
    return 2;
  }
  if ((fuse_fd = open("/dev/fuse", O_RDWR | O_CLOEXEC)) < 0) {
    perror("fuse-floor: /dev/fuse");
    return 1;
  }
  char opts[256];
  snprintf(opts, sizeof(opts), "fd=%d,rootmode=40000,user_id=0,group_id=0,max_read=%d,allow_other,default_permissions",
           fuse_fd, MAX_WRITE);
  mkdir(mnt, 0755);
  if (mount("fusefloor", mnt, "fuse.fusefloor", MS_NOSUID | MS_NODEV, opts) != 0) {
    perror("fuse-floor: mount");
    return 1;
  }
  pthread_t t;
  for (int i = 0; i < workers; i++) {
    if (pthread_create(&t, NULL, worker, NULL) != 0) {
      perror("fuse-floor: pthread_create");
      umount2(mnt, MNT_DETACH);
      return 1;
    }
    pthread_detach(t);
  }
  pthread_mutex_lock(&init_lock);
  while (!init_done) pthread_cond_wait(&init_cond, &init_lock);
  pthread_mutex_unlock(&init_lock);
  printf("ready\n");
  fflush(stdout);
  char c;
  while (read(0, &c, 1) > 0) {
  }
  umount2(mnt, MNT_DETACH);
  return 0;
}
