/* cuda_runtime.h of the CUDA emulator: see tests/emu/cuda_emu.h */
#include "../cuda_emu.h"
