/* Gather along one dim by a constant index table (core/backend/cpu/gather.c
 * is the reference): table [O, K, I], idx [M], out [O, M, I].
 *
 * Backward reads the index table inverted (for each row k, the positions m
 * that picked it, ascending), so every gradient entry is one thread's sum in
 * the CPU's order: no atomics, and the same floats as the CPU. */
#include "backend/cuda/common.cuh"

// out: [O, M, I], table: [O, K, I], idx: [M]
__global__ void gather_forward_kernel(float *out, const float *table, const int32_t *idx, int64_t O, int64_t K,
                                      int64_t I, int64_t M)
{
    GRID_STRIDE(k, O * M * I)
    {
        int64_t i = k % I, m = k / I % M, o = k / (I * M);
        out[k] = table[(o * K + idx[m]) * I + i];
    }
}

// dtable: [O, K, I], dy: [O, M, I]; row r was picked at pos[start[r] .. start[r + 1])
__global__ void gather_backward_kernel(float *dtable, const float *dy, const int32_t *start, const int32_t *pos,
                                       int64_t O, int64_t K, int64_t I, int64_t M, int32_t acc)
{
    GRID_STRIDE(k, O * K * I)
    {
        int64_t i = k % I, r = k / I % K, o = k / (I * K);
        float sum = acc ? dtable[k] : 0.0f;
        for (int32_t j = start[r]; j < start[r + 1]; j++) sum += dy[(o * M + pos[j]) * I + i];
        dtable[k] = sum;
    }
}

extern "C" usi_error *usi_cuda_gather_forward(cudaStream_t s, float *out, const float *table, const int32_t *idx,
                                              int64_t O, int64_t K, int64_t I, int64_t M)
{
    gather_forward_kernel<<<grid_for(O * M * I), THREADS, 0, s>>>(out, table, idx, O, K, I, M);
    LAUNCH_CHECK("gather_forward");
}

extern "C" usi_error *usi_cuda_gather_backward(cudaStream_t s, float *dtable, const float *dy, const int32_t *start,
                                               const int32_t *pos, int64_t O, int64_t K, int64_t I, int64_t M,
                                               int32_t acc)
{
    gather_backward_kernel<<<grid_for(O * K * I), THREADS, 0, s>>>(dtable, dy, start, pos, O, K, I, M, acc);
    LAUNCH_CHECK("gather_backward");
}
