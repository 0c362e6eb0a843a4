# The CUDA backend (src/kernels/cuda/*.cu). M2FP4_CUDA defaults to ON when nvcc is found; without
# it the project builds the same, the backend's entry points throw "built without CUDA" and the
# GPU tests skip. Architectures: 90 (Hopper), 100 (Blackwell data centre), 120/121 (Blackwell
# GeForce / GB10), those of them this nvcc lists; override with -DCMAKE_CUDA_ARCHITECTURES=...
include(CheckLanguage)
check_language(CUDA)
set(_m2fp4_cuda_default OFF)
if(CMAKE_CUDA_COMPILER)
  set(_m2fp4_cuda_default ON)
endif()
option(M2FP4_CUDA "Build the CUDA backend (needs nvcc)" ${_m2fp4_cuda_default})

if(M2FP4_CUDA)
  if(NOT CMAKE_CUDA_COMPILER)
    message(FATAL_ERROR "M2FP4_CUDA=ON but no CUDA compiler was found (set CMAKE_CUDA_COMPILER)")
  endif()
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    execute_process(COMMAND ${CMAKE_CUDA_COMPILER} --list-gpu-arch
                    OUTPUT_VARIABLE _m2fp4_nvcc_archs ERROR_QUIET)
    set(_m2fp4_archs "")
    foreach(arch 90 100 120 121)
      if(_m2fp4_nvcc_archs MATCHES "compute_${arch}")
        list(APPEND _m2fp4_archs ${arch})
      endif()
    endforeach()
    if(NOT _m2fp4_archs)
      message(FATAL_ERROR "nvcc lists none of the architectures 90, 100, 120, 121; "
                          "set CMAKE_CUDA_ARCHITECTURES or -DM2FP4_CUDA=OFF")
    endif()
    set(CMAKE_CUDA_ARCHITECTURES "${_m2fp4_archs}" CACHE STRING "CUDA architectures")
  endif()
  # CMake 3.25 has no CUDA20 dialect for nvcc; the .cu files need only C++17.
  set(CMAKE_CUDA_STANDARD 17)
  set(CMAKE_CUDA_EXTENSIONS OFF)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
  message(STATUS "m2fp4: CUDA backend ON, architectures ${CMAKE_CUDA_ARCHITECTURES}")

  file(GLOB _m2fp4_cu CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/kernels/cuda/*.cu)
  add_library(m2fp4_kernels_cuda STATIC ${_m2fp4_cu})
  target_include_directories(m2fp4_kernels_cuda PUBLIC ${PROJECT_SOURCE_DIR}/src)
  # Host code under the project's warnings (as errors with M2FP4_WERROR); device code warnings too.
  set(_m2fp4_cuda_warn -Xcompiler=-Wall,-Wextra)
  if(M2FP4_WERROR)
    list(APPEND _m2fp4_cuda_warn -Werror=all-warnings -Xcompiler=-Werror)
  endif()
  target_compile_options(m2fp4_kernels_cuda PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:${_m2fp4_cuda_warn}>)
  target_link_libraries(m2fp4_kernels_cuda PUBLIC m2fp4_base m2fp4_numerics CUDA::cudart_static)
  # The kernels layer calls into the .cu library and the .cu library uses the layer's launch
  # checks: a cycle CMake resolves for static libraries.
  target_link_libraries(m2fp4_kernels PUBLIC m2fp4_kernels_cuda)
  target_link_libraries(m2fp4_kernels_cuda PUBLIC m2fp4_kernels)
  target_compile_definitions(m2fp4_kernels PUBLIC M2FP4_WITH_CUDA=1)
endif()

# The full-width layer benchmark (bench/cuda_layer_bench.cu; runs only on a GPU).
if(M2FP4_CUDA AND M2FP4_BENCH)
  add_executable(cuda_layer_bench ${PROJECT_SOURCE_DIR}/bench/cuda_layer_bench.cu)
  target_compile_options(cuda_layer_bench PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:${_m2fp4_cuda_warn}>)
  target_link_libraries(cuda_layer_bench PRIVATE m2fp4_model)
  set_target_properties(cuda_layer_bench PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                                                    ${PROJECT_BINARY_DIR}/bench)
endif()
