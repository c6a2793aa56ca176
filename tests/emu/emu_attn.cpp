/* emu_attn.cpp — the tiled attention kernels of kernels/cuda/cuda_attn_tiled.cu (the real
 * file, rewritten by transform.sh and included below) run by the CUDA emulator against a
 * double-precision reference, through the file's own host launchers (grid = items) and
 * with small grids (grid-stride loops); then checks that the emulator itself catches what
 * it must (divergent barrier, bad shuffles, uninitialized shared memory, too much dynamic
 * shared memory, host pointers). Prints "ok ..."/"FAIL ..." lines (tests/check.sh counts
 * them); exits 1 on any failure.  Usage: emu-attn [CASE]   (MU_EMU_SEED: schedules) */
#include "cuda_attn_tiled.cpp"       /* $(BUILD)/emu/cuda/: kernels/cuda/cuda_attn_tiled.cu */
#include <algorithm>
#include <cstdarg>
#include <random>
#include <vector>
#include <sys/wait.h>
#include <unistd.h>
#include <fcntl.h>

int mu_cu_debug_sync;
void mu_cu_fail(const char *what, const char *msg, const char *file, int line)
{
    fprintf(stderr, "mu: cuda: %s:%d: %s: %s\n", file, line, what, msg);
    exit(1);
}

static int failures;

static void report(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(bool ok, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    printf("%s emu-attn: %s\n", ok ? "ok  " : "FAIL", msg);
    fflush(stdout);
    if (!ok) failures++;
}

/* device copy of host floats (n may be 0) */
static float *dev(const float *h, size_t n)
{
    float *d = NULL;
    CK(cudaMalloc(&d, (n ? n : 1) * sizeof(float)));
    if (n && h) CK(cudaMemcpy(d, h, n * sizeof(float), cudaMemcpyHostToDevice));
    return d;
}
static int32_t *dev_i(const int32_t *h, size_t n)
{
    if (!h) return NULL;
    int32_t *d = NULL;
    CK(cudaMalloc(&d, n * sizeof(int32_t)));
    CK(cudaMemcpy(d, h, n * sizeof(int32_t), cudaMemcpyHostToDevice));
    return d;
}
static std::vector<float> host(const float *d, size_t n)
{
    std::vector<float> h(n ? n : 1);
    if (n) CK(cudaMemcpy(h.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost));
    return h;
}

/* max |got - want| against tol * max(1, max |want|); -inf must match exactly */
static bool close_to(const std::vector<float> &got, const std::vector<double> &want, double tol,
                     char *why, size_t cap)
{
    double mx = 1, err = 0;
    for (double w : want) if (std::isfinite(w)) mx = std::max(mx, fabs(w));
    for (size_t i = 0; i < want.size(); i++) {
        bool bad = std::isfinite(want[i]) ? !std::isfinite(got[i]) ||
                                                fabs(got[i] - want[i]) > tol * mx
                                          : !(got[i] == want[i]);
        if (bad) {
            snprintf(why, cap, "at %zu: got %g want %g", i, got[i], want[i]);
            return false;
        }
        if (std::isfinite(want[i])) err = std::max(err, fabs(got[i] - want[i]));
    }
    snprintf(why, cap, "maxerr %.2g", err);
    return true;
}

/* one shape: forward and backward against the double reference; grid 0: the file's host
 * launchers, else the kernels on that many blocks; softcap, window as mu_attn_shape's
 * (0: none) */
template <int HD>
static void run_case(int B, int Tq, int Tk, int H, int Hkv, int hd, const int32_t *q_pos0,
                     const int32_t *k_len, unsigned grid, int seed, float softcap = 0,
                     int window = 0)
{
    std::mt19937 r(seed);
    std::normal_distribution<float> nd(0, 1);
    attn_dev s = { B, Tq, Tk, H, Hkv, hd, q_pos0, k_len, 1.0f / sqrtf((float)hd), softcap,
                   window };
    size_t nq = (size_t)B * Tq * H * hd, nk = (size_t)B * Tk * Hkv * hd, nl = (size_t)B * H * Tq;
    std::vector<float> Q(nq), K(nk), V(nk), dO(nq);
    for (auto *v : { &Q, &K, &V, &dO }) for (float &x : *v) x = nd(r);
    std::vector<double> O(nq, 0), L(nl), dQ(nq, 0), dK(nk, 0), dV(nk, 0), sc(Tk > 0 ? Tk : 1);
    int group = H / Hkv;
    std::vector<double> dcap(Tk > 0 ? Tk : 1);     /* d(capped score) / d(score) */
    for (int b = 0; b < B; b++) for (int t = 0; t < Tq; t++) for (int h = 0; h < H; h++) {
        int lo = first_key(s, b, t), n = n_keys(s, b, t), kh = h / group;
        size_t qo = (((size_t)b * Tq + t) * H + h) * hd, li = ((size_t)b * H + h) * Tq + t;
        if (n <= lo) { L[li] = -INFINITY; continue; }
        double m = -INFINITY;
        for (int j = lo; j < n; j++) {
            size_t ko = (((size_t)b * Tk + j) * Hkv + kh) * hd;
            double a = 0;
            for (int d = 0; d < hd; d++) a += (double)Q[qo + d] * K[ko + d];
            sc[j] = a * s.scale;
            dcap[j] = 1;
            if (softcap > 0) {
                sc[j] = softcap * tanh(sc[j] / softcap);
                dcap[j] = 1 - (sc[j] / softcap) * (sc[j] / softcap);
            }
            m = std::max(m, sc[j]);
        }
        double sum = 0;
        for (int j = lo; j < n; j++) { sc[j] = exp(sc[j] - m); sum += sc[j]; }
        for (int j = lo; j < n; j++) {
            size_t ko = (((size_t)b * Tk + j) * Hkv + kh) * hd;
            for (int d = 0; d < hd; d++) O[qo + d] += sc[j] / sum * V[ko + d];
        }
        L[li] = m + log(sum);
        double delta = 0;
        for (int d = 0; d < hd; d++) delta += (double)dO[qo + d] * O[qo + d];
        for (int j = lo; j < n; j++) {
            size_t ko = (((size_t)b * Tk + j) * Hkv + kh) * hd;
            double p = sc[j] / sum, dp = 0;
            for (int d = 0; d < hd; d++) dp += (double)dO[qo + d] * V[ko + d];
            double ds = p * (dp - delta) * dcap[j];
            for (int d = 0; d < hd; d++) {
                dQ[qo + d] += s.scale * ds * K[ko + d];
                dK[ko + d] += s.scale * ds * Q[qo + d];
                dV[ko + d] += p * dO[qo + d];
            }
        }
    }
    /* backward inputs from the reference: O, lse and delta = rowsum(dO * O) as floats */
    std::vector<float> fO(O.begin(), O.end()), fL(L.begin(), L.end()), fD(nl);
    for (int b = 0; b < B; b++) for (int t = 0; t < Tq; t++) for (int h = 0; h < H; h++) {
        size_t qo = (((size_t)b * Tq + t) * H + h) * hd;
        double a = 0;
        for (int d = 0; d < hd; d++) a += (double)dO[qo + d] * fO[qo + d];
        fD[((size_t)b * H + h) * Tq + t] = (float)a;
    }
    float *gQ = dev(Q.data(), nq), *gK = dev(K.data(), nk), *gV = dev(V.data(), nk);
    float *gdO = dev(dO.data(), nq), *gO = dev(NULL, nq), *gL = dev(NULL, nl);
    float *cO = dev(fO.data(), nq), *cL = dev(fL.data(), nl), *cD = dev(fD.data(), nl);
    float *gdQ = dev(NULL, nq), *gdK = dev(NULL, nk), *gdV = dev(NULL, nk);   /* NaN-filled */
    attn_dev a = s;
    a.q_pos0 = dev_i(q_pos0, (size_t)B);
    a.k_len = dev_i(k_len, (size_t)B);
    if (grid == 0) {
        mu_cu_attention_tiled(gO, gL, gQ, gK, gV, a);
        mu_cu_attention_bwd_tiled(gdQ, gdK, gdV, gdO, cL, cD, gQ, gK, gV, a);
    } else {
        const cudaFuncAttribute dyn = cudaFuncAttributeMaxDynamicSharedMemorySize;
        CK(cudaFuncSetAttribute(k_attn_fwd_tiled<HD>, dyn, (int)fwd_smem<HD>()));
        CK(cudaFuncSetAttribute(k_attn_dq_tiled<HD>, dyn, (int)dq_smem<HD>()));
        CK(cudaFuncSetAttribute(k_attn_dkv_tiled<HD>, dyn, (int)dkv_smem<HD>()));
        EMU_LAUNCH(k_attn_fwd_tiled<HD>, grid, NT, fwd_smem<HD>())(gO, gL, gQ, gK, gV, a);
        CK(cudaGetLastError());
        EMU_LAUNCH(k_attn_dq_tiled<HD>, grid, NT, dq_smem<HD>())(gdQ, gdO, cL, cD, gQ, gK, gV, a);
        CK(cudaGetLastError());
        EMU_LAUNCH(k_attn_dkv_tiled<HD>, grid, NT, dkv_smem<HD>())(gdK, gdV, gdO, cL, cD, gQ, gK, gV, a);
        CK(cudaGetLastError());
    }
    char shape[200], opts[64] = "", why[5][120];
    size_t items = (size_t)B * H * ((Tq + AQT - 1) / AQT);        /* the launchers' grid */
    if (softcap > 0 || window > 0)
        snprintf(opts, sizeof opts, " softcap %g window %d", softcap, window);
    snprintf(shape, sizeof shape, "tiled<%d> B%d Tq%d Tk%d H%d/%d hd%d%s grid %u", HD, B, Tq, Tk,
             H, Hkv, hd, opts, grid ? grid : (unsigned)std::min<size_t>(items, MAX_ITEMS));
    bool ok[5] = {
        close_to(host(gO, nq), O, 1e-5, why[0], sizeof why[0]),
        close_to(host(gL, nl), L, 1e-5, why[1], sizeof why[1]),
        close_to(host(gdQ, nq), dQ, 1e-5, why[2], sizeof why[2]),
        close_to(host(gdK, nk), dK, 1e-5, why[3], sizeof why[3]),
        close_to(host(gdV, nk), dV, 1e-5, why[4], sizeof why[4]),
    };
    const char *names[5] = { "O", "lse", "dQ", "dK", "dV" };
    for (int i = 0; i < 5; i++) report(ok[i], "%s: %s %s", shape, names[i], why[i]);
    for (float *p : { gQ, gK, gV, gdO, gO, gL, cO, cL, cD, gdQ, gdK, gdV }) CK(cudaFree(p));
    CK(cudaFree((void *)a.q_pos0));
    CK(cudaFree((void *)a.k_len));
}

/* ---- the emulator's own strictness: each kernel below is wrong and must be caught ------- */
__global__ void bad_divergent_barrier(float *x)
{
    if (threadIdx.x < 32) __syncthreads();           /* only warp 0 reaches it */
    x[threadIdx.x] = 1.0f;
}
__global__ void bad_two_barriers(float *x)
{
    if (threadIdx.x & 1) __syncthreads();
    else __syncthreads();                            /* two different barriers */
    x[threadIdx.x] = 1.0f;
}
__global__ void bad_shfl_lane(float *x)
{
    x[threadIdx.x] = __shfl_sync(0xffffffffu, 1.0f, (int)(threadIdx.x & 31) + 1);   /* lane 32 */
}
__global__ void bad_shfl_mask(float *x)
{
    x[threadIdx.x] = __shfl_sync(0x0000ffffu, 1.0f, 0);
}
__global__ void bad_shfl_exit(float *x)
{
    if ((threadIdx.x & 31) == 5) return;             /* lane 5 never joins the shuffle */
    x[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}
__global__ void uninit_shared(float *x)
{
    __shared__ float sh[NT];
    if (threadIdx.x < NT / 2) sh[threadIdx.x] = 1.0f;   /* the upper half never written */
    __syncthreads();
    x[threadIdx.x] = sh[threadIdx.x];
}
__global__ void missing_barrier(float *x)
{
    extern __shared__ float dyn[];
    dyn[threadIdx.x] = (float)threadIdx.x;
    x[threadIdx.x] = dyn[(threadIdx.x + 64) % blockDim.x];   /* another warp's write */
}

/* runs f in a child; true when the child died of abort() (the emulator's error path) */
template <class F> static bool aborts(F f)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); exit(1); }
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stderr)) _exit(3);
        f();
        _exit(0);
    }
    int st = 0;
    if (waitpid(pid, &st, 0) < 0) { perror("waitpid"); exit(1); }
    return WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT;
}

static void strictness(void)
{
    float *x = dev(NULL, 1024);
    std::vector<float> h_host(1024);
    report(aborts([&] { EMU_LAUNCH(bad_divergent_barrier, 1, NT)(x); }),
           "emulator: __syncthreads in divergent code is a deadlock");
    report(aborts([&] { EMU_LAUNCH(bad_two_barriers, 1, NT)(x); }),
           "emulator: two __syncthreads sites meeting are reported");
    report(aborts([&] { EMU_LAUNCH(bad_shfl_lane, 1, NT)(x); }),
           "emulator: shuffle source lane 32 is reported");
    report(aborts([&] { EMU_LAUNCH(bad_shfl_mask, 1, NT)(x); }),
           "emulator: a partial shuffle mask is reported");
    report(aborts([&] { EMU_LAUNCH(bad_shfl_exit, 1, NT)(x); }),
           "emulator: a lane missing from a shuffle is a deadlock");
    report(aborts([&] { EMU_LAUNCH(bad_shfl_lane, 1, 48)(x); }),
           "emulator: a shuffle in a partial warp (48 threads) is reported");
    report(aborts([&] { EMU_LAUNCH(uninit_shared, 1, NT)(h_host.data()); }),
           "emulator: a host pointer as kernel argument is reported");
    EMU_LAUNCH(uninit_shared, 1, NT)(x);
    std::vector<float> got = host(x, NT);
    report(got[0] == 1.0f && std::isnan(got[NT - 1]),
           "emulator: static shared memory starts as NaN (got %g at %d)", got[NT - 1], NT - 1);
    /* a missing __syncthreads: some schedule lets a warp read before the writer ran */
    int stale = 0;
    for (int rep = 0; rep < 8; rep++) {
        EMU_LAUNCH(missing_barrier, 4, NT, NT * sizeof(float))(x);
        got = host(x, NT);
        for (int i = 0; i < NT; i++) stale += std::isnan(got[i]);
    }
    report(stale > 0, "emulator: a missing __syncthreads reads NaN shared memory (%d reads)",
           stale);
    /* a kernel written for NT threads launched with fewer: its tiles are half loaded (NaN
     * shared memory), so the output differs from the NT-thread launch */
    {
        const int B = 1, T = 40, H = 2, hd = 32;
        size_t n = (size_t)B * T * H * hd;
        std::vector<float> h(n);
        std::mt19937 r(7);
        std::normal_distribution<float> nd(0, 1);
        for (float &v : h) v = nd(r);
        float *q = dev(h.data(), n), *o1 = dev(NULL, n), *o2 = dev(NULL, n);
        attn_dev a = { B, T, T, H, H, hd, NULL, NULL, 0.2f, 0.0f, 0 };
        EMU_LAUNCH(k_attn_fwd_tiled<32>, 2, NT, fwd_smem<32>())(o1, nullptr, q, q, q, a);
        EMU_LAUNCH(k_attn_fwd_tiled<32>, 2, NT / 2, fwd_smem<32>())(o2, nullptr, q, q, q, a);
        std::vector<float> g1 = host(o1, n), g2 = host(o2, n);
        size_t differ = 0, finite = 0;
        for (size_t i = 0; i < n; i++) {
            finite += std::isfinite(g1[i]);
            differ += !(g1[i] == g2[i]);
        }
        report(finite == n && differ > 0, "emulator: blockDim %d instead of %d shows (%zu of %zu "
               "outputs differ)", NT / 2, NT, differ, n);
        for (float *p : { q, o1, o2 }) CK(cudaFree(p));
    }
    /* dynamic shared memory: 48 KB without the attribute, the attribute up to 227 KB (the
     * refused launch's message on stderr is expected: silenced) */
    fflush(stderr);
    int saved = dup(2), devnull = open("/dev/null", O_WRONLY);
    if (saved < 0 || devnull < 0 || dup2(devnull, 2) < 0) { perror("emu-attn: /dev/null"); exit(1); }
    cudaGetLastError();
    EMU_LAUNCH(missing_barrier, 1, NT, 64 * 1024)(x);
    cudaError_t e1 = cudaGetLastError();
    CK(cudaFuncSetAttribute(missing_barrier, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024));
    EMU_LAUNCH(missing_barrier, 1, NT, 64 * 1024)(x);
    cudaError_t e2 = cudaGetLastError();
    cudaError_t e3 = cudaFuncSetAttribute(missing_barrier, cudaFuncAttributeMaxDynamicSharedMemorySize, 228 * 1024);
    cudaGetLastError();
    EMU_LAUNCH(missing_barrier, 1, 2048)(x);
    cudaError_t e4 = cudaGetLastError();
    float *o = dev(NULL, 64);                    /* __launch_bounds__(NT, 2): 2 NT threads fail */
    attn_dev a1 = { 1, 1, 1, 1, 1, 32, NULL, NULL, 1.0f, 0.0f, 0 };
    EMU_LAUNCH(k_attn_fwd_tiled<32>, 1, 2 * NT, fwd_smem<32>())(o, nullptr, o, o, o, a1);
    cudaError_t e5 = cudaGetLastError();
    CK(cudaFree(o));
    fflush(stderr);
    if (dup2(saved, 2) < 0) { perror("emu-attn: stderr"); exit(1); }
    close(saved);
    close(devnull);
    report(e1 != cudaSuccess && e2 == cudaSuccess && e3 != cudaSuccess && e4 != cudaSuccess &&
           e5 == cudaErrorLaunchOutOfResources,
           "emulator: launch limits (64 KB without the attribute: %d, with: %d; attribute "
           "228 KB: %d; 2048 threads: %d; %d threads past __launch_bounds__: %d)", (int)e1,
           (int)e2, (int)e3, (int)e4, 2 * NT, (int)e5);
    CK(cudaFree(x));
}

int main(int argc, char **argv)
{
    int only = argc > 1 ? atoi(argv[1]) : -1, c = 0;
#define CASE(...) do { if (only < 0 || only == c) { __VA_ARGS__; } c++; } while (0)
    const int32_t l1[3] = { 70, 41, 0 };
    CASE(run_case<32>(3, 70, 70, 4, 2, 6, NULL, l1, 1, 1));
    const int32_t l2[3] = { 100, 1, 0 };
    CASE(run_case<32>(3, 100, 100, 4, 4, 32, NULL, l2, 3, 2));
    const int32_t l3[2] = { 77, 33 };
    CASE(run_case<64>(2, 77, 77, 8, 2, 64, NULL, l3, 0, 3));
    const int32_t l4[1] = { 45 };
    CASE(run_case<128>(1, 45, 45, 8, 1, 96, NULL, l4, 2, 4));
    CASE(run_case<128>(1, 130, 130, 2, 1, 128, NULL, NULL, 0, 5));
    const int32_t p6[3] = { 37, 0, 70 }, k6[3] = { 42, 3, 75 };
    CASE(run_case<64>(3, 5, 80, 4, 2, 64, p6, k6, 7, 6));
    const int32_t p7[4] = { 99, 0, 31, 64 }, k7[4] = { 100, 1, 32, 65 };
    CASE(run_case<128>(4, 1, 100, 4, 4, 128, p7, k7, 0, 7));
    const int32_t l8[2] = { 20, 0 };
    CASE(run_case<32>(2, 20, 20, 2, 1, 20, NULL, l8, 1, 8));
    const int32_t p9[2] = { 30, 0 }, k9[2] = { 100, 50 };      /* chunked prefill, Tq 70 */
    CASE(run_case<64>(2, 70, 128, 4, 1, 64, p9, k9, 1, 9));
    CASE(run_case<128>(2, 70, 128, 2, 2, 128, p9, k9, 0, 10));
    /* sliding windows: key tiles below a query tile's first key skipped, dK/dV stopping
     * at the last query whose window reaches the key tile; padded rows whose queries past
     * length + window - 1 see nothing */
    CASE(run_case<32>(3, 70, 70, 4, 2, 32, NULL, l1, 1, 11, 0.0f, 5));
    CASE(run_case<64>(1, 130, 130, 4, 1, 64, NULL, NULL, 0, 12, 0.0f, 40));
    CASE(run_case<32>(2, 40, 40, 2, 2, 20, NULL, l8, 3, 13, 0.0f, 1));     /* the diagonal */
    CASE(run_case<64>(2, 70, 128, 4, 1, 64, p9, k9, 1, 14, 0.0f, 40));     /* chunked prefill */
    CASE(run_case<64>(3, 5, 80, 4, 2, 64, p6, k6, 0, 15, 0.0f, 5));        /* decode */
    /* soft-capped scores: 50 (nearly linear), 1 (tanh saturates), with a window */
    CASE(run_case<64>(2, 77, 77, 8, 2, 64, NULL, l3, 0, 16, 50.0f));
    CASE(run_case<32>(3, 100, 100, 4, 4, 32, NULL, l2, 2, 17, 1.0f));
    CASE(run_case<128>(2, 70, 128, 2, 2, 96, p9, k9, 0, 18, 1.0f, 40));
    CASE(strictness());
    printf("emu-attn: %d failure(s)\n", failures);
    return failures != 0;
}
