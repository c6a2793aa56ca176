/* cublas_v2.h of the CUDA emulator: see tests/emu/cuda_emu.h */
#include "../cuda_emu.h"
