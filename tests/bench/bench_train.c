/* bench_train — training throughput and peak memory of mu-train's loop on the
 * SmolLM2-135M shape (30 layers, d 576, 9 heads, 3 kv heads, MLP 1536, vocab 49152, tied
 * embeddings), random weights, `learn` on random token sequences, batch 4 x 128, AdamW:
 *   full      every parameter trained
 *   masked1%  1% of the model's parameters: random elements of the MLP matrices
 *   facts1%   the same mask, trained only on each sequence's last ANSWER tokens (a fact's
 *             answer after its prompt, as in Sports Facts): logits only at those positions
 * Each configuration runs in its own child process, so its peak RSS (getrusage) is its
 * own. PyTorch's full-training figure on the same shape is measured in the same run when
 * $MU_PYTHON (default python3) can import torch and transformers.
 * Environment: BENCH_TRAIN_STEPS (timed steps, default 2). Not a test: prints a table. */
#define _GNU_SOURCE
#include "train.h"
#include "config.h"
#include "cli.h"
#include "bench.h"
#include "rng.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <omp.h>

enum { BATCH = 4, SEQ = 128, ANSWER = 8 };

/* Random token sequences, trained on every next token from prompt_len on. */
static void random_set(mu_train_set *set, int n, int vocab, int prompt_len) {
    mu_rng r;
    mu_rng_seed(&r, 123);
    int32_t **ids = malloc(n * sizeof *ids);
    int *len = malloc(n * sizeof *len), *pl = malloc(n * sizeof *pl);
    for (int i = 0; i < n; i++) {
        ids[i] = malloc(SEQ * sizeof(int32_t));
        for (int k = 0; k < SEQ; k++) ids[i][k] = (int32_t)mu_rng_below(&r, (uint64_t)vocab);
        len[i] = SEQ;
        pl[i] = prompt_len;
    }
    mu_train_set_from_arrays(set, n, ids, len, pl);
    for (int i = 0; i < n; i++) free(ids[i]);
    free(ids); free(len); free(pl);
}

/* 1% of all parameters as random elements of the MLP matrices. */
static void mlp_percent_mask(mu_model *m, mu_mask *mask) {
    char err[256];
    int64_t total = 0, mlp = 0;
    for (int i = 0; i < mu_model_n_params(m); i++) {
        mu_param *p = mu_model_param(m, i);
        total += p->numel;
        if (p->info.layer >= 0 && (!strcmp(p->info.role, "gate") || !strcmp(p->info.role, "up") ||
                                   !strcmp(p->info.role, "down"))) mlp += p->numel;
    }
    uint64_t per_million = (uint64_t)(1e6 * 0.01 * (double)total / (double)mlp);
    mu_mask_init(mask, "element", total);
    mu_rng r;
    mu_rng_seed(&r, 7);
    for (int i = 0; i < mu_model_n_params(m); i++) {
        mu_param *p = mu_model_param(m, i);
        if (p->info.layer < 0 || (strcmp(p->info.role, "gate") && strcmp(p->info.role, "up") &&
                                  strcmp(p->info.role, "down"))) continue;
        mu_mask_tensor *t = mu_mask_add(mask, p->info.name, p->info.ndim, p->info.shape, MU_GRAN_ELEMENT,
                                        p->numel, err, sizeof err);
        if (!t) { fprintf(stderr, "%s\n", err); exit(1); }
        for (int64_t e = 0; e < p->numel; e++)
            if (mu_rng_below(&r, 1000000) < per_million) mu_mask_set(t, e, 1);
    }
}

/* Child: trains `steps` steps of configuration cfg (0 full, 1 masked1%, 2 facts1%); writes
 * "tokens_per_s optim_bytes params_trained" to fd. */
static void child(int cfg, int steps, int fd) {
    int masked = cfg > 0;
    mu_config c;
    bench_shape_smollm2(&c);
    char err[512];
    mu_model *m = mu_model_init_random(&c, 1, 0.02f, mu_backend_cpu(), err, sizeof err);
    if (!m) { fprintf(stderr, "%s\n", err); _exit(1); }
    mu_mask mask;
    if (masked) mlp_percent_mask(m, &mask);
    mu_train_opts o;
    mu_train_opts_default(&o);
    o.coef[MU_OBJ_LEARN] = 1;
    o.batch = BATCH;
    o.steps = 1;
    o.opt.lr = 1e-4;
    mu_trainer *t = mu_trainer_new(m, NULL, masked ? &mask : NULL, &o, err, sizeof err);
    if (!t) { fprintf(stderr, "%s\n", err); _exit(1); }
    mu_train_set set;
    random_set(&set, BATCH * (steps + 1), c.vocab, cfg == 2 ? SEQ - ANSWER : 0);
    mu_trainer_set_data(t, MU_DATA_FORGET, &set);
    /* one untimed step (allocations), then the timed ones one at a time through the same
     * trainer: the fastest step counts (a shared machine only ever slows a step down) */
    if (mu_trainer_run(t, NULL, err, sizeof err)) { fprintf(stderr, "%s\n", err); _exit(1); }
    double fwdbwd = 0;
    for (int s = 0; s < steps; s++) {
        mu_trainer_set_steps(t, 2 + s);
        double t0 = mu_now();
        if (mu_trainer_run(t, NULL, err, sizeof err)) { fprintf(stderr, "%s\n", err); _exit(1); }
        double dt = mu_now() - t0;
        if (s == 0 || dt < fwdbwd) fwdbwd = dt;
    }
    int64_t trained = 0;
    for (int i = 0; i < mu_trainer_n_trained(t); i++) trained += mu_trainer_trained_set(t, i)->n;
    char buf[256];
    int n = snprintf(buf, sizeof buf, "%.1f %zu %lld\n", (double)(BATCH * SEQ) / fwdbwd,
                     mu_trainer_optim_bytes(t), (long long)trained);
    if (write(fd, buf, (size_t)n) != n) _exit(1);
    _exit(0);
}

static int run_child(int cfg, int steps, double *tps, double *optim_mb, long long *trained, double *rss_mb) {
    int p[2];
    if (pipe(p)) return -1;
    pid_t pid = fork();
    if (pid == 0) { close(p[0]); child(cfg, steps, p[1]); }
    close(p[1]);
    char buf[256] = {0};
    ssize_t n = read(p[0], buf, sizeof buf - 1);
    close(p[0]);
    int status;
    struct rusage ru;
    wait4(pid, &status, 0, &ru);
    size_t ob;
    if (n <= 0 || !WIFEXITED(status) || WEXITSTATUS(status) || sscanf(buf, "%lf %zu %lld", tps, &ob, trained) != 3)
        return -1;
    *optim_mb = (double)ob / 1048576.0;
    *rss_mb = (double)ru.ru_maxrss / 1024.0;
    return 0;
}

static const char torch_code[] =
    "import sys, time, resource, torch\n"
    "from transformers import LlamaConfig, LlamaForCausalLM\n"
    "steps = int(sys.argv[1]); torch.manual_seed(0)\n"
    "c = LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,\n"
    "    num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True, rms_norm_eps=1e-5, rope_theta=1e5)\n"
    "m = LlamaForCausalLM(c).float().train()\n"
    "opt = torch.optim.AdamW(m.parameters(), lr=1e-4)\n"
    "ids = torch.randint(0, 49152, (steps + 1, 4, 128))\n"
    "def step(x):\n"
    "    opt.zero_grad(); m(input_ids=x, labels=x).loss.backward(); opt.step()\n"
    "step(ids[0]); t0 = time.time()\n"
    "for s in range(steps): step(ids[s + 1])\n"
    "dt = time.time() - t0\n"
    "print('%.1f %.1f %d' % (steps * 512 / dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,\n"
    "      torch.get_num_threads()))\n";

int main(void) {
    const char *s = getenv("BENCH_TRAIN_STEPS");
    int steps = s && atoi(s) > 0 ? atoi(s) : 2;
    printf("bench_train: SmolLM2-135M shape (30 x 576, 9/3 heads, MLP 1536, vocab 49152, tied), random init,\n"
           "objective learn, batch %d x %d tokens, the fastest of %d timed steps (forward, loss, backward,\n"
           "AdamW update; after one untimed step), %d OpenMP threads\n",
           BATCH, SEQ, steps, omp_get_max_threads());
    printf("%-10s %12s %14s %14s %12s\n", "config", "tokens/s", "trained", "optim MiB", "peak RSS MiB");
    const char *names[3] = {"full", "masked1%", "facts1%"};
    for (int cfg = 0; cfg < 3; cfg++) {
        double tps, omb, rss;
        long long tr;
        if (run_child(cfg, steps, &tps, &omb, &tr, &rss)) { printf("%-10s failed\n", names[cfg]); continue; }
        printf("%-10s %12.1f %14lld %14.1f %12.1f\n", names[cfg], tps, tr, omb, rss);
        fflush(stdout);
    }
    const char *py = getenv("MU_PYTHON");
    if (!py || !*py) py = "python3";
    char cmd[8192], script[64];
    snprintf(script, sizeof script, "/tmp/mu_bench_train_%d.py", (int)getpid());
    FILE *f = fopen(script, "w");
    if (f) { fputs(torch_code, f); fclose(f); }
    snprintf(cmd, sizeof cmd, "%s %s %d 2>/dev/null", py, script, steps);
    FILE *pp = f ? popen(cmd, "r") : NULL;
    double tps, rss;
    int thr;
    if (pp && fscanf(pp, "%lf %lf %d", &tps, &rss, &thr) == 3)
        printf("%-10s %12.1f %14s %14s %12.1f   (PyTorch CPU, fwd+bwd+AdamW, %d threads)\n", "torch", tps,
               "all", "-", rss, thr);
    else
        printf("torch: not available (%s cannot import torch/transformers)\n", py);
    if (pp) pclose(pp);
    unlink(script);
    return 0;
}
