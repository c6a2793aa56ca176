/* emu.cpp — the CPU side of the CUDA emulator (tests/emu/cuda_emu.h): fibers for the
 * threads of a block and their scheduler, the runtime calls, cuBLAS GEMMs.
 *
 * Fibers: one worker fiber per thread of a block (its own guarded stack), reused by every
 * block; switched by a few instructions on x86-64, by ucontext elsewhere. A thread runs
 * until it waits at a barrier (__syncthreads: the block; a shuffle: its warp) or ends; then
 * the next runnable lane of its warp runs, and when the warp can go no further (or, for a
 * slow warp, now and then) the scheduler picks a warp: each round takes the warps that can
 * run in a random order, a slow warp (each warp draws a speed per block) sitting out most
 * rounds. A completed __syncthreads always returns to the scheduler, so which warp goes on
 * first varies. Blocks run one after another in a random order. MU_EMU_SEED=N picks the
 * schedules (default 1).
 *
 * Strictness: any problem in a kernel prints one line "mu: cuda-emu: KERNEL block B: ..."
 * on stderr and aborts: a barrier that cannot complete (some threads exited or wait at
 * another barrier: a deadlock on a GPU), threads of one barrier at two different lines,
 * a shuffle with a mask other than 0xffffffff, a source lane outside the width, a partial
 * warp, a kernel pointer argument outside device memory. Bad launch configurations (block
 * size, more threads than the kernel's __launch_bounds__, more dynamic shared memory than
 * its cudaFuncSetAttribute limit or 48 KB)
 * fail the launch as CUDA does (cudaGetLastError). Pointer arguments are checked when they
 * are kernel parameters themselves (not pointers inside struct arguments).
 * MU_EMU_COVERAGE=FILE: every process appends the names of the kernels it launched. */
#include "cuda_emu.h"
#include <cstdarg>
#include <map>
#include <string>
#include <vector>
#include <ucontext.h>
#include <pthread.h>
#include <cxxabi.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/common_interface_defs.h>
#define EMU_ASAN 1
#else
#define EMU_ASAN 0
#endif

uint3 emu_tid, emu_bid;
dim3 emu_bdim, emu_gdim;

/* ---- device description ---------------------------------------------------------------- */
#define EMU_SMS 2
#define EMU_SMEM_DEFAULT (48 * 1024)
#define EMU_SMEM_OPTIN (227 * 1024)
#define EMU_TOTAL_MEM ((size_t)16 << 30)
#define EMU_MAX_THREADS 1024

static cudaError_t g_last = cudaSuccess;
static const char *g_kernel = "?";          /* running kernel, for messages */
static unsigned g_block_lin;


[[noreturn]] static void emu_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void emu_fail(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fflush(stdout);
    fprintf(stderr, "mu: cuda-emu: %s block %u: %s\n", g_kernel, g_block_lin, msg);
    abort();
}

/* ---- random numbers (xorshift64*) ------------------------------------------------------- */
static uint64_t g_rng;
static uint64_t rnd(void)
{
    if (!g_rng) {
        const char *s = getenv("MU_EMU_SEED");
        g_rng = 0x9E3779B97F4A7C15ull * (uint64_t)(s && *s ? strtoull(s, NULL, 10) + 1 : 2);
    }
    g_rng ^= g_rng >> 12; g_rng ^= g_rng << 25; g_rng ^= g_rng >> 27;
    return g_rng * 2685821657736338717ull;
}
static unsigned rnd_below(unsigned n) { return (unsigned)((rnd() >> 32) % n); }

/* ---- fibers ---------------------------------------------------------------------------------- */
#define STACK_BYTES (512 * 1024)
enum { T_RUN, T_BAR, T_WARP, T_DONE };

/* A fiber's saved context. x86-64: its stack pointer, the callee-saved registers pushed on
 * its stack by emu_ctx_switch (a few instructions, no system call). Elsewhere: ucontext. */
#if defined(__x86_64__)
struct fctx { void *sp; };
extern "C" void emu_ctx_switch(void **save_sp, void *to_sp);
asm(".text\n"
    ".globl emu_ctx_switch\n"
    ".type emu_ctx_switch,@function\n"
    "emu_ctx_switch:\n"
    "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
    "  ret\n"
    ".size emu_ctx_switch, .-emu_ctx_switch\n");
static void ctx_switch(fctx *from, fctx *to) { emu_ctx_switch(&from->sp, to->sp); }
static void ctx_make(fctx *c, char *stack, size_t size, void (*entry)(void))
{
    /* as if entry had been called: 16-byte aligned top, a null return address, entry for
     * emu_ctx_switch's ret, six zero registers */
    uintptr_t top = ((uintptr_t)stack + size) & ~(uintptr_t)15;
    void **sp = (void **)top;
    *--sp = NULL;
    *--sp = (void *)entry;
    for (int i = 0; i < 6; i++) *--sp = NULL;
    c->sp = sp;
}
#else
struct fctx { ucontext_t uc; };
static void ctx_switch(fctx *from, fctx *to)
{
    if (swapcontext(&from->uc, &to->uc)) { perror("mu: cuda-emu: swapcontext"); abort(); }
}
static void ctx_make(fctx *c, char *stack, size_t size, void (*entry)(void))
{
    if (getcontext(&c->uc)) { perror("mu: cuda-emu: getcontext"); abort(); }
    c->uc.uc_stack.ss_sp = stack;
    c->uc.uc_stack.ss_size = size;
    c->uc.uc_link = NULL;
    makecontext(&c->uc, entry, 0);
}
#endif

struct worker {
    fctx ctx;
    char *stack;            /* usable part (above the guard page) */
    size_t size;
    void *fake_stack;       /* ASan */
};
struct thread_st {
    int state;
    unsigned gen;           /* barrier generation it waits for to change */
    uint3 tid;
};
struct site { const char *file; int line; };

static std::vector<worker> g_w;
static std::vector<thread_st> g_t;
static fctx g_sched;
static void *g_sched_fake;
static const void *g_sched_bottom;
static size_t g_sched_size;
static int g_cur = -1;
static const std::function<void()> *g_body;
static unsigned g_nthreads, g_nwarps;

/* block barrier */
static unsigned g_bar_count, g_bar_gen;
static site g_bar_site;
/* warp barriers and shuffle slots (double-buffered by generation) */
struct warp_st {
    unsigned count, gen;
    site where;
    uint64_t slot[2][32];
};
static std::vector<warp_st> g_warp;
static std::vector<double> g_speed;

static void asan_start(void **save, const void *bottom, size_t size)
{
#if EMU_ASAN
    __sanitizer_start_switch_fiber(save, bottom, size);
#else
    (void)save; (void)bottom; (void)size;
#endif
}
static void asan_finish(void *save, const void **bottom, size_t *size)
{
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(save, bottom, size);
#else
    (void)save; (void)bottom; (void)size;
#endif
}

/* the running thread gives control back to the scheduler */
static void yield_to_sched(void)
{
    int me = g_cur;
    asan_start(&g_w[me].fake_stack, g_sched_bottom, g_sched_size);
    ctx_switch(&g_w[me].ctx, &g_sched);
    asan_finish(g_w[me].fake_stack, NULL, NULL);
}

static inline bool runnable(int t);
static void switch_fiber(int me, int next);

/* a runnable thread of warp wi: the lanes after `me` in turn (me < 0: from a random lane),
 * or -1 */
static int pick_lane(unsigned wi, int me)
{
    unsigned base = wi * 32, n = g_nthreads - base < 32 ? g_nthreads - base : 32;
    unsigned start = me < 0 ? (unsigned)(rnd() >> 40) % n : ((unsigned)me - base + 1) % n;
    for (unsigned i = 0; i < n; i++) {
        int t = (int)(base + (start + i) % n);
        if (t != me && runnable(t)) return t;
    }
    return -1;
}

/* the running thread waits: another lane of its warp runs if one can (a slow warp gives
 * way to the scheduler now and then), else the scheduler */
static void wait_here(int me)
{
    unsigned wi = (unsigned)me / 32;
    int next = g_speed[wi] < 1.0 && (rnd() >> 56) == 0 ? -1 : pick_lane(wi, me);
    if (next >= 0) switch_fiber(me, next);
    else yield_to_sched();
}

/* a worker: runs the thread it was switched to (thread t on worker t), block after block */
static void worker_main(void)
{
    asan_finish(NULL, NULL, NULL);
    for (;;) {
        (*g_body)();
        int me = g_cur;
        g_t[me].state = T_DONE;
        wait_here(me);
    }
}

static void make_worker(int i)
{
    long page = sysconf(_SC_PAGESIZE);
    char *m = (char *)mmap(NULL, STACK_BYTES + page, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) { perror("mu: cuda-emu: mmap"); abort(); }
    if (mprotect(m, page, PROT_NONE)) { perror("mu: cuda-emu: mprotect"); abort(); }
    worker &w = g_w[i];
    w.stack = m + page;
    /* stack tops staggered over 4 KB: equal offsets would share L1 sets across fibers */
    w.size = STACK_BYTES - (size_t)(i % 64) * 64 - (size_t)(i / 64 % 4) * 16;
    w.fake_stack = NULL;
    ctx_make(&w.ctx, w.stack, w.size, worker_main);
}

/* ASan: the scheduler's stack (the calling thread's), where fibers return to */
static void sched_stack_bounds(void)
{
#if EMU_ASAN
    if (g_sched_size) return;
    pthread_attr_t a;
    void *addr = NULL;
    size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &a) || pthread_attr_getstack(&a, &addr, &size)) {
        fprintf(stderr, "mu: cuda-emu: cannot find the stack of the launching thread\n");
        abort();
    }
    pthread_attr_destroy(&a);
    g_sched_bottom = addr;
    g_sched_size = size;
#endif
}

/* scheduler side: run thread t (and lanes of its warp) until they wait or end */
static void switch_to(int t)
{
    sched_stack_bounds();
    g_cur = t;
    emu_tid = g_t[t].tid;
    asan_start(&g_sched_fake, g_w[t].stack, g_w[t].size);
    ctx_switch(&g_sched, &g_w[t].ctx);
    asan_finish(g_sched_fake, NULL, NULL);
    g_cur = -1;
}

/* fiber to fiber (lanes of one warp) */
static void switch_fiber(int me, int next)
{
    g_t[next].state = T_RUN;
    g_cur = next;
    emu_tid = g_t[next].tid;
    asan_start(&g_w[me].fake_stack, g_w[next].stack, g_w[next].size);
    ctx_switch(&g_w[me].ctx, &g_w[next].ctx);
    asan_finish(g_w[me].fake_stack, NULL, NULL);
}

static inline bool runnable(int t)
{
    const thread_st &s = g_t[t];
    switch (s.state) {
    case T_RUN: return true;
    case T_BAR: return g_bar_gen != s.gen;
    case T_WARP: return g_warp[t / 32].gen != s.gen;
    default: return false;
    }
}

static void report_deadlock(void)
{
    /* who waits where */
    std::map<std::string, int> where;
    for (unsigned t = 0; t < g_nthreads; t++) {
        char k[256];
        const thread_st &s = g_t[t];
        if (s.state == T_DONE) snprintf(k, sizeof k, "exited");
        else if (s.state == T_BAR)
            snprintf(k, sizeof k, "at __syncthreads %s:%d", g_bar_site.file, g_bar_site.line);
        else
            snprintf(k, sizeof k, "at a warp shuffle %s:%d (warp %u)",
                     g_warp[t / 32].where.file, g_warp[t / 32].where.line, t / 32);
        where[k]++;
    }
    std::string msg;
    for (auto &kv : where) {
        char b[300];
        snprintf(b, sizeof b, "%s%d threads %s", msg.empty() ? "" : ", ", kv.second, kv.first.c_str());
        msg += b;
    }
    emu_fail("deadlock: a barrier not reached by every thread (%s)", msg.c_str());
}

static void run_block(void)
{
    for (unsigned t = 0; t < g_nthreads; t++) {
        g_t[t].state = T_RUN;
        g_t[t].gen = 0;
        unsigned bx = emu_bdim.x, by = emu_bdim.y;
        g_t[t].tid = uint3{t % bx, (t / bx) % by, t / (bx * by)};
    }
    g_bar_count = 0; g_bar_gen = 0; g_bar_site = site{NULL, 0};
    for (unsigned w = 0; w < g_nwarps; w++) {
        warp_st &ws = g_warp[w];
        ws.count = 0; ws.gen = 0; ws.where = site{NULL, 0};
        static const double speeds[3] = { 1.0, 0.25, 0.03 };
        g_speed[w] = speeds[rnd_below(3)];
    }
    std::vector<unsigned> ready;
    ready.reserve(g_nwarps);
    for (;;) {
        ready.clear();
        unsigned done = 0;
        for (unsigned t = 0; t < g_nthreads; t++) {
            if (g_t[t].state == T_DONE) done++;
            else if (runnable((int)t) && (ready.empty() || ready.back() != t / 32))
                ready.push_back(t / 32);
        }
        if (ready.empty()) {
            if (done == g_nthreads) return;
            report_deadlock();
        }
        /* warps in a random order; a slow warp sits out most rounds while others can run */
        bool any = false;
        for (unsigned &w : ready) {
            bool go = (double)(rnd() >> 11) * 0x1p-53 < g_speed[w];
            any = any || go;
            if (!go) w |= 0x80000000u;
        }
        for (size_t i = ready.size(); i > 1; i--) std::swap(ready[i - 1], ready[rnd_below((unsigned)i)]);
        for (unsigned w : ready) {
            if (any && (w & 0x80000000u)) continue;
            int t = pick_lane(w & 0x7fffffffu, -1);
            if (t >= 0) switch_to(t);
        }
    }
}

/* ---- barriers and shuffles (called on a fiber) ------------------------------------------- */
void emu_syncthreads(const char *file, int line)
{
    int me = g_cur;
    if (me < 0) { fprintf(stderr, "mu: cuda-emu: __syncthreads outside a kernel\n"); abort(); }
    if (g_bar_count == 0) g_bar_site = site{file, line};
    else if (g_bar_site.line != line || (g_bar_site.file != file && strcmp(g_bar_site.file, file)))
        emu_fail("__syncthreads at %s:%d while other threads wait at %s:%d (divergent barrier)",
                 file, line, g_bar_site.file, g_bar_site.line);
    if (++g_bar_count == g_nthreads) {          /* released: the scheduler picks who goes on */
        g_bar_count = 0;
        g_bar_gen++;
        g_t[me].state = T_RUN;
        yield_to_sched();
    } else {
        g_t[me].state = T_BAR;
        g_t[me].gen = g_bar_gen;
        wait_here(me);
    }
}

uint64_t emu_shfl(unsigned mask, uint64_t v, int src, int width, int xor_mask, const char *file,
                  int line)
{
    int me = g_cur;
    if (me < 0) { fprintf(stderr, "mu: cuda-emu: shuffle outside a kernel\n"); abort(); }
    unsigned wi = (unsigned)me / 32, lane = (unsigned)me % 32;
    warp_st &w = g_warp[wi];
    if (mask != 0xffffffffu)
        emu_fail("%s:%d: shuffle mask 0x%08x: the emulator needs full warps (0xffffffff)",
                 file, line, mask);
    if ((wi + 1) * 32 > g_nthreads)
        emu_fail("%s:%d: shuffle in a partial warp (%u threads per block)", file, line,
                 g_nthreads);
    if (width < 1 || width > 32 || (width & (width - 1)))
        emu_fail("%s:%d: shuffle width %d", file, line, width);
    int from;
    if (xor_mask >= 0) {
        from = (int)(lane ^ (unsigned)xor_mask);
        if (xor_mask >= width)
            emu_fail("%s:%d: shuffle xor lane mask %d >= width %d", file, line, xor_mask, width);
    } else {
        if (src < 0 || src >= width)
            emu_fail("%s:%d: shuffle source lane %d outside 0..%d", file, line, src, width - 1);
        from = (int)(lane & ~(unsigned)(width - 1)) + src;
    }
    if (w.count == 0) w.where = site{file, line};
    else if (w.where.line != line || (w.where.file != file && strcmp(w.where.file, file)))
        emu_fail("shuffle at %s:%d while other lanes of warp %u are at %s:%d (divergent)",
                 file, line, wi, w.where.file, w.where.line);
    unsigned buf = w.gen & 1;
    w.slot[buf][lane] = v;
    if (++w.count == 32) {                       /* released: this lane goes on */
        w.count = 0;
        w.gen++;
    } else {
        g_t[me].state = T_WARP;
        g_t[me].gen = w.gen;
        wait_here(me);
    }
    return w.slot[buf][from];
}

/* ---- shared memory ---------------------------------------------------------------------------- */
static std::vector<unsigned char> g_dyn;      /* the block's dynamic shared memory */
static size_t g_dyn_bytes;
static unsigned long g_block_serial;          /* changes with every block run */
static std::map<void *, unsigned long> g_static_seen;

void *emu_dyn_smem_ptr(void)
{
    if (g_cur < 0) { fprintf(stderr, "mu: cuda-emu: dynamic shared memory outside a kernel\n"); abort(); }
    return g_dyn_bytes ? (void *)g_dyn.data() : NULL;
}

void emu_shared_nan(void *p, size_t n)
{
    unsigned long &seen = g_static_seen[p];
    if (seen != g_block_serial) {
        memset(p, 0xff, n);
        seen = g_block_serial;
    }
}

/* ---- device memory -------------------------------------------------------------------------- */
static std::map<uintptr_t, size_t> g_allocs;  /* base -> bytes */
static size_t g_used;

/* allocation holding [p, p + n) (n may be 0: p may be its end), or NULL */
static const std::pair<const uintptr_t, size_t> *find_alloc(const void *p, size_t n)
{
    uintptr_t a = (uintptr_t)p;
    auto it = g_allocs.upper_bound(a);
    if (it == g_allocs.begin()) return NULL;
    --it;
    if (a < it->first || a + n > it->first + it->second || a - it->first > it->second) return NULL;
    return &*it;
}

cudaError_t emu_malloc(void **p, size_t n)
{
    if (!p) return g_last = cudaErrorInvalidValue;
    *p = NULL;
    if (n > EMU_TOTAL_MEM - g_used) return g_last = cudaErrorMemoryAllocation;
    void *m = NULL;              /* exactly n bytes: ASan builds catch overruns past them */
    if (posix_memalign(&m, 256, n ? n : 1)) m = NULL;
    if (!m) return g_last = cudaErrorMemoryAllocation;
    memset(m, 0xff, n);                           /* NaN (and -1): unwritten data shows */
    g_allocs[(uintptr_t)m] = n;
    g_used += n;
    *p = m;
    return cudaSuccess;
}

cudaError_t cudaFree(void *p)
{
    if (!p) return cudaSuccess;
    auto it = g_allocs.find((uintptr_t)p);
    if (it == g_allocs.end()) return g_last = cudaErrorInvalidDevicePointer;
    g_used -= it->second;
    g_allocs.erase(it);
    free(p);
    return cudaSuccess;
}

static bool is_dev(const void *p, size_t n) { return find_alloc(p, n) != NULL; }

cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind)
{
    if (!n) return cudaSuccess;
    if (!dst || !src) return g_last = cudaErrorInvalidValue;
    bool ok;
    switch (kind) {
    case cudaMemcpyHostToDevice: ok = is_dev(dst, n) && !is_dev(src, 0); break;
    case cudaMemcpyDeviceToHost: ok = is_dev(src, n) && !is_dev(dst, 0); break;
    case cudaMemcpyDeviceToDevice: ok = is_dev(src, n) && is_dev(dst, n); break;
    case cudaMemcpyHostToHost: ok = !is_dev(src, 0) && !is_dev(dst, 0); break;
    case cudaMemcpyDefault: ok = true; break;
    default: return g_last = cudaErrorInvalidMemcpyDirection;
    }
    if (!ok) {
        fprintf(stderr, "mu: cuda-emu: cudaMemcpy of %zu bytes (kind %d): a range outside device "
                "memory or a pointer on the wrong side\n", n, (int)kind);
        return g_last = cudaErrorInvalidValue;
    }
    memmove(dst, src, n);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind,
                            cudaStream_t)
{
    return cudaMemcpy(dst, src, n, kind);
}

cudaError_t cudaMemset(void *p, int v, size_t n)
{
    if (!n) return cudaSuccess;
    if (!is_dev(p, n)) {
        fprintf(stderr, "mu: cuda-emu: cudaMemset of %zu bytes outside device memory\n", n);
        return g_last = cudaErrorInvalidValue;
    }
    memset(p, v, n);
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t) { return cudaMemset(p, v, n); }

cudaError_t cudaGetLastError(void) { cudaError_t e = g_last; g_last = cudaSuccess; return e; }
cudaError_t cudaPeekAtLastError(void) { return g_last; }
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
cudaError_t cudaGetDeviceCount(int *n)
{
    if (!n) return cudaErrorInvalidValue;
    *n = 1;
    return cudaSuccess;
}
static int g_dev;
cudaError_t cudaSetDevice(int d)
{
    if (d != 0) return g_last = cudaErrorInvalidDevice;
    g_dev = d;
    return cudaSuccess;
}
cudaError_t cudaGetDevice(int *d)
{
    if (!d) return cudaErrorInvalidValue;
    *d = g_dev;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d)
{
    if (!p) return cudaErrorInvalidValue;
    if (d != 0) return g_last = cudaErrorInvalidDevice;
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "emulated");
    p->totalGlobalMem = EMU_TOTAL_MEM;
    p->sharedMemPerBlock = EMU_SMEM_DEFAULT;
    p->sharedMemPerBlockOptin = EMU_SMEM_OPTIN;
    p->warpSize = 32;
    p->maxThreadsPerBlock = EMU_MAX_THREADS;
    p->clockRate = 1980000;
    p->multiProcessorCount = EMU_SMS;
    p->major = 9;
    p->minor = 0;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int d)
{
    if (!v) return cudaErrorInvalidValue;
    if (d != 0) return g_last = cudaErrorInvalidDevice;
    switch (a) {
    case cudaDevAttrMaxThreadsPerBlock: *v = EMU_MAX_THREADS; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *v = EMU_SMEM_DEFAULT; break;
    case cudaDevAttrWarpSize: *v = 32; break;
    case cudaDevAttrClockRate: *v = 1980000; break;
    case cudaDevAttrMultiProcessorCount: *v = EMU_SMS; break;
    case cudaDevAttrComputeCapabilityMajor: *v = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *v = 0; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = EMU_SMEM_OPTIN; break;
    default: return g_last = cudaErrorInvalidValue;
    }
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b)
{
    if (!free_b || !total_b) return cudaErrorInvalidValue;
    *total_b = EMU_TOTAL_MEM;
    *free_b = EMU_TOTAL_MEM - g_used;
    return cudaSuccess;
}

const char *cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    }
    return "unknown error";
}

static std::map<const void *, int> g_func_smem;   /* kernel -> opt-in dynamic shared bytes */

cudaError_t emu_func_set_attribute(const void *fn, cudaFuncAttribute a, int v)
{
    if (!fn) return g_last = cudaErrorInvalidValue;
    if (a != cudaFuncAttributeMaxDynamicSharedMemorySize) return g_last = cudaErrorInvalidValue;
    if (v < 0 || v > EMU_SMEM_OPTIN) return g_last = cudaErrorInvalidValue;
    g_func_smem[fn] = v;
    return cudaSuccess;
}

/* ---- launches ------------------------------------------------------------------------------ */
static std::map<std::string, unsigned long> g_launched;

void emu_check_arg_ptr(const char *kernel, int index, const void *p)
{
    if (!p || is_dev(p, 0)) return;
    fflush(stdout);
    fprintf(stderr, "mu: cuda-emu: %s: pointer argument %d (%p) is not device memory\n", kernel,
            index + 1, p);
    abort();
}

static std::map<std::string, int> &bounds(void)
{
    static std::map<std::string, int> m;     /* kernel name (no template arguments) -> max */
    return m;
}
void emu_register_bounds(const char *kernel, int max_threads) { bounds()[kernel] = max_threads; }

/* The kernel's own name: from its symbol where the launch had its address (a launch
 * through a function pointer names the pointer), else the launch's text. Needs the
 * executable's symbols exported (-rdynamic). */
static const char *kernel_name(const char *text, const void *fn)
{
    static std::map<const void *, std::string> cache;
    if (!fn) return text;
    auto it = cache.find(fn);
    if (it != cache.end()) return it->second.c_str();
    std::string name = text;
    Dl_info info;
    if (dladdr(fn, &info) && info.dli_sname && info.dli_saddr == fn) {
        int st = 0;
        char *d = abi::__cxa_demangle(info.dli_sname, NULL, NULL, &st);
        std::string full = st == 0 && d ? d : info.dli_sname;
        free(d);
        /* "void k_x<32>(float*, ...)" -> "k_x<32>" */
        size_t paren = full.find('(');
        if (paren != std::string::npos) full.resize(paren);
        if (full.compare(0, 5, "void ") == 0) full.erase(0, 5);
        if (!full.empty()) name = full;
    }
    return cache.emplace(fn, name).first->second.c_str();
}

/* MU_EMU_COVERAGE=FILE: each process appends the name of every kernel it launches, once */
static void note_coverage(const char *name)
{
    const char *path = getenv("MU_EMU_COVERAGE");
    if (!path || !*path) return;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd < 0) { fprintf(stderr, "mu: cuda-emu: %s: cannot open\n", path); return; }
    std::string line = std::string(name) + "\n";
    if (write(fd, line.data(), line.size()) != (ssize_t)line.size())
        fprintf(stderr, "mu: cuda-emu: %s: write failed\n", path);
    close(fd);
}

int emu_run_grid(const char *name, const void *fn, dim3 grid, dim3 block, size_t smem,
                 const std::function<void()> &body)
{
    if (g_cur >= 0) { fprintf(stderr, "mu: cuda-emu: launch of %s inside a kernel\n", name); abort(); }
    size_t nthreads = (size_t)block.x * block.y * block.z;
    if (!block.x || !block.y || !block.z || nthreads > EMU_MAX_THREADS || block.z > 64 ||
        !grid.x || !grid.y || !grid.z || grid.x > 0x7fffffffu || grid.y > 65535 ||
        grid.z > 65535) {
        g_last = cudaErrorInvalidConfiguration;
        return 1;
    }
    size_t limit = EMU_SMEM_DEFAULT;
    if (fn) {
        auto it = g_func_smem.find(fn);
        if (it != g_func_smem.end() && (size_t)it->second > limit) limit = (size_t)it->second;
    }
    if (smem > limit) {
        fprintf(stderr, "mu: cuda-emu: %s: %zu bytes of dynamic shared memory above the "
                "kernel's limit of %zu\n", name, smem, limit);
        g_last = cudaErrorInvalidValue;
        return 1;
    }
    name = kernel_name(name, fn);
    std::string base(name, strcspn(name, "<"));
    auto lb = bounds().find(base);
    if (lb != bounds().end() && nthreads > (size_t)lb->second) {
        fprintf(stderr, "mu: cuda-emu: %s: %zu threads per block above its __launch_bounds__ "
                "(%d)\n", name, nthreads, lb->second);
        g_last = cudaErrorLaunchOutOfResources;
        return 1;
    }
    if (g_launched[name]++ == 0) note_coverage(name);
    g_kernel = name;
    g_nthreads = (unsigned)nthreads;
    g_nwarps = (g_nthreads + 31) / 32;
    if (g_w.size() < nthreads) {
        size_t old = g_w.size();
        g_w.resize(nthreads);
        for (size_t i = old; i < nthreads; i++) make_worker((int)i);
    }
    g_t.resize(nthreads > g_t.size() ? nthreads : g_t.size());
    g_warp.resize(g_nwarps > g_warp.size() ? g_nwarps : g_warp.size());
    g_speed.resize(g_warp.size());
    g_dyn.resize(smem > g_dyn.size() ? smem : g_dyn.size());
    g_dyn_bytes = smem;
    g_body = &body;
    emu_gdim = grid;
    emu_bdim = block;
    /* blocks in a random order: b -> (a * b + c) mod nblocks, a coprime to nblocks */
    uint64_t nb = (uint64_t)grid.x * grid.y * grid.z, a = 1, c = rnd() % nb;
    if (nb > 1) {
        for (;;) {
            a = 1 + rnd() % (nb - 1);
            uint64_t x = a, y = nb;
            while (y) { uint64_t r = x % y; x = y; y = r; }
            if (x == 1) break;
        }
    }
    for (uint64_t i = 0; i < nb; i++) {
        uint64_t b = (a * i + c) % nb;
        g_block_lin = (unsigned)b;
        emu_bid = uint3{(unsigned)(b % grid.x), (unsigned)((b / grid.x) % grid.y),
                        (unsigned)(b / ((uint64_t)grid.x * grid.y))};
        if (smem) memset(g_dyn.data(), 0xff, smem);
        g_block_serial++;
        run_block();
    }
    g_kernel = "?";
    g_body = NULL;
    return 0;
}

/* ---- cuBLAS ------------------------------------------------------------------------------------ */
struct cublasContext { cublasMath_t mode; };

cublasStatus_t cublasCreate(cublasHandle_t *h)
{
    if (!h) return CUBLAS_STATUS_INVALID_VALUE;
    *h = new cublasContext{CUBLAS_DEFAULT_MATH};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h)
{
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode)
{
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (mode != CUBLAS_DEFAULT_MATH && mode != CUBLAS_TENSOR_OP_MATH &&
        mode != CUBLAS_PEDANTIC_MATH && mode != CUBLAS_TF32_TENSOR_OP_MATH)
        return CUBLAS_STATUS_INVALID_VALUE;
    h->mode = mode;
    return CUBLAS_STATUS_SUCCESS;
}
const char *cublasGetStatusString(cublasStatus_t s)
{
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}

/* element (i, l) of op(X) for X stored column-major with leading dimension ld */
template <class T, class Get>
static inline float op_at(const T *X, cublasOperation_t t, int ld, int i, int l, Get get)
{
    return t == CUBLAS_OP_N ? get(X[(size_t)l * ld + i]) : get(X[(size_t)i * ld + l]);
}

/* C = alpha op(A) op(B) + beta C, column-major; op(A) m x k, op(B) k x n, C m x n; C is not
 * read when beta == 0 (cuBLAS). The checks are cuBLAS's own. */
template <class T, class Get>
static cublasStatus_t gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                           int n, int k, float alpha, const T *A, int lda, const T *B, int ldb,
                           float beta, float *C, int ldc, Get get)
{
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if ((ta != CUBLAS_OP_N && ta != CUBLAS_OP_T && ta != CUBLAS_OP_C) ||
        (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T && tb != CUBLAS_OP_C) || m < 0 || n < 0 ||
        k < 0 || lda < (ta == CUBLAS_OP_N ? (m > 1 ? m : 1) : (k > 1 ? k : 1)) ||
        ldb < (tb == CUBLAS_OP_N ? (k > 1 ? k : 1) : (n > 1 ? n : 1)) || ldc < (m > 1 ? m : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    /* every element the call touches lies in device memory */
    size_t arows = ta == CUBLAS_OP_N ? (size_t)m : (size_t)k, acols = ta == CUBLAS_OP_N ? k : m;
    size_t brows = tb == CUBLAS_OP_N ? (size_t)k : (size_t)n, bcols = tb == CUBLAS_OP_N ? n : k;
    if ((k > 0 && (!is_dev(A, ((acols - 1) * lda + arows) * sizeof(T)) ||
                   !is_dev(B, ((bcols - 1) * ldb + brows) * sizeof(T)))) ||
        !is_dev(C, ((size_t)(n - 1) * ldc + m) * sizeof(float))) {
        fprintf(stderr, "mu: cuda-emu: cuBLAS GEMM operand outside device memory\n");
        return CUBLAS_STATUS_EXECUTION_FAILED;
    }
    std::vector<float> col(k > 0 ? k : 1);
    for (int j = 0; j < n; j++) {
        for (int l = 0; l < k; l++) col[l] = op_at(B, tb, ldb, l, j, get);
        for (int i = 0; i < m; i++) {
            float acc = 0.0f;
            if (ta == CUBLAS_OP_N)
                for (int l = 0; l < k; l++) acc += get(A[(size_t)l * lda + i]) * col[l];
            else {
                const T *a = A + (size_t)i * lda;
                for (int l = 0; l < k; l++) acc += get(a[l]) * col[l];
            }
            float *c = C + (size_t)j * ldc + i;
            *c = beta == 0.0f ? alpha * acc : alpha * acc + beta * *c;
        }
    }
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                           int n, int k, const float *alpha, const float *A, int lda,
                           const float *B, int ldb, const float *beta, float *C, int ldc)
{
    if (!alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
    return gemm(h, ta, tb, m, n, k, *alpha, A, lda, B, ldb, *beta, C, ldc,
                [](float x) { return x; });
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const void *alpha, const void *A, cudaDataType Atype,
                            int lda, const void *B, cudaDataType Btype, int ldb,
                            const void *beta, void *C, cudaDataType Ctype, int ldc,
                            cublasComputeType_t ctype, cublasGemmAlgo_t algo)
{
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
    if (algo != CUBLAS_GEMM_DEFAULT) return CUBLAS_STATUS_INVALID_VALUE;
    if (ctype != CUBLAS_COMPUTE_32F || Ctype != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    float al = *(const float *)alpha, be = *(const float *)beta;
    if (Atype == CUDA_R_16BF && Btype == CUDA_R_16BF)
        return gemm(h, ta, tb, m, n, k, al, (const __nv_bfloat16 *)A, lda,
                    (const __nv_bfloat16 *)B, ldb, be, (float *)C, ldc,
                    [](__nv_bfloat16 x) { return __bfloat162float(x); });
    if (Atype == CUDA_R_32F && Btype == CUDA_R_32F)
        return gemm(h, ta, tb, m, n, k, al, (const float *)A, lda, (const float *)B, ldb, be,
                    (float *)C, ldc, [](float x) { return x; });
    return CUBLAS_STATUS_NOT_SUPPORTED;
}
