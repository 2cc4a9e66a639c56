# Decides whether the CUDA backend is built and, if so, finds the toolkit, cuBLAS and cuDNN.
# Sets FISEDIT_HAVE_CUDA and the imported target fisedit::cudnn.
set(FISEDIT_HAVE_CUDA OFF)
if(FISEDIT_CUDA STREQUAL "OFF")
  message(STATUS "fisedit: CUDA disabled (FISEDIT_CUDA=OFF): building the CPU engine only")
  return()
endif()

if(NOT DEFINED CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
  set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
endif()
include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  if(FISEDIT_CUDA STREQUAL "ON")
    message(FATAL_ERROR "fisedit: FISEDIT_CUDA=ON but no CUDA compiler was found (install the CUDA toolkit or set CUDACXX)")
  endif()
  message(STATUS "fisedit: no CUDA toolkit found: building the CPU engine only")
  return()
endif()

# Hopper (sm_90) machine code plus PTX for compute_80 that the driver JIT-compiles for other GPUs.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES 90-real 80-virtual)
endif()
enable_language(CUDA)
set(CMAKE_CUDA_STANDARD 17)  # CMake 3.25 knows no C++20 flag for nvcc; kernels need no C++20
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
find_package(CUDAToolkit REQUIRED)

find_path(CUDNN_INCLUDE_DIR cudnn.h HINTS ${CUDAToolkit_INCLUDE_DIRS} PATH_SUFFIXES cudnn)
find_library(CUDNN_LIBRARY cudnn HINTS ${CUDAToolkit_LIBRARY_DIR})
if(NOT CUDNN_INCLUDE_DIR OR NOT CUDNN_LIBRARY)
  if(FISEDIT_CUDA STREQUAL "ON")
    message(FATAL_ERROR "fisedit: cuDNN not found next to the CUDA toolkit")
  endif()
  message(STATUS "fisedit: CUDA toolkit found but cuDNN is missing: building the CPU engine only")
  return()
endif()
add_library(fisedit::cudnn UNKNOWN IMPORTED)
set_target_properties(fisedit::cudnn PROPERTIES
  IMPORTED_LOCATION "${CUDNN_LIBRARY}"
  INTERFACE_INCLUDE_DIRECTORIES "${CUDNN_INCLUDE_DIR}")

set(FISEDIT_HAVE_CUDA ON)
message(STATUS "fisedit: CUDA ${CUDAToolkit_VERSION} backend enabled for architectures ${CMAKE_CUDA_ARCHITECTURES} (cuDNN ${CUDNN_LIBRARY})")
