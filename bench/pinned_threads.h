/* Runs one piece of work on each of `threads` new threads, each pinned to its own CPU, all released
 * together by a common start flag, and measures the wall time from the first start to the last end.
 *
 * Shared by the benchmark's measuring loops (fma_peak.c, read_kernel.c); they are measuring devices,
 * not part of fastgru. Left to the scheduler, a new thread often starts on its creator's CPU and the
 * two share it for milliseconds, so every thread is pinned. The start flag is raised only once every
 * thread is running on its CPU and has said so, which keeps thread creation and a late first
 * time slice out of the timed interval (on a loaded machine a new thread can wait milliseconds for
 * its CPU). A flag, not a pthread barrier: if creating a later thread fails, the earlier ones must
 * be told to leave, and threads waiting at a barrier cannot be. */
#ifndef BENCH_PINNED_THREADS_H
#define BENCH_PINNED_THREADS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <time.h>

#define BENCH_MAX_THREADS 256

typedef struct bench_job {
    void (*work)(struct bench_job *job);
    const int *go; /* 0 while threads are being created, 1: start, -1: leave without working */
    int *ready;    /* how many threads are running and waiting for go */
    double started, ended; /* CLOCK_MONOTONIC seconds */
    /* the work's own arguments and result; each file uses the fields it needs */
    const float *buf;
    size_t n;
    long reps;
    int width;
    double sink; /* a value derived from every result, so the compiler keeps the work */
} bench_job;

static double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *bench_thread_main(void *arg) {
    bench_job *job = (bench_job *)arg;
    int go;
    __atomic_add_fetch(job->ready, 1, __ATOMIC_RELEASE);
    while ((go = __atomic_load_n(job->go, __ATOMIC_ACQUIRE)) == 0) __builtin_ia32_pause();
    if (go < 0) return NULL;
    job->started = bench_now();
    job->work(job);
    job->ended = bench_now();
    return NULL;
}

/* Runs jobs[0..threads) concurrently, job t on CPU cpus[t] (no pinning where cpus is NULL or
 * cpus[t] < 0). Returns 0 and sets *wall_seconds, or a negative code: -1 bad thread count,
 * -2 a thread could not be created (e.g. a CPU outside the allowed set). */
static int bench_run_pinned(bench_job *jobs, int threads, const int *cpus, double *wall_seconds) {
    pthread_t tids[BENCH_MAX_THREADS];
    int go = 0, ready = 0;
    if (threads < 1 || threads > BENCH_MAX_THREADS) return -1;
    int created = 0, failed = 0;
    for (int t = 0; t < threads; t++) {
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        if (cpus && cpus[t] >= 0) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(cpus[t], &one);
            pthread_attr_setaffinity_np(&attr, sizeof one, &one);
        }
        jobs[t].go = &go;
        jobs[t].ready = &ready;
        failed = pthread_create(&tids[t], &attr, bench_thread_main, &jobs[t]);
        pthread_attr_destroy(&attr);
        if (failed) break;
        created++;
    }
    if (!failed)
        while (__atomic_load_n(&ready, __ATOMIC_ACQUIRE) < threads) sched_yield();
    __atomic_store_n(&go, failed ? -1 : 1, __ATOMIC_RELEASE);
    for (int t = 0; t < created; t++) pthread_join(tids[t], NULL);
    if (failed) return -2;
    double first = jobs[0].started, last = jobs[0].ended;
    for (int t = 1; t < threads; t++) {
        if (jobs[t].started < first) first = jobs[t].started;
        if (jobs[t].ended > last) last = jobs[t].ended;
    }
    *wall_seconds = last - first;
    return 0;
}

#endif
