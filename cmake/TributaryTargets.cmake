# Warning, sanitizer and floating-point flags shared by every project target.
add_library(tributary_flags INTERFACE)
target_include_directories(tributary_flags INTERFACE ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
target_compile_options(tributary_flags INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Werror -Wno-error=deprecated-declarations>
  # Replicas must stay bit-identical: no implicit FMA contraction (docs/architecture.md, "Numerics").
  $<$<COMPILE_LANGUAGE:CXX>:-ffp-contract=off>)

if(TRIBUTARY_ASAN)
  target_compile_options(tributary_flags INTERFACE
    $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined>)
  target_link_options(tributary_flags INTERFACE -fsanitize=address,undefined)
endif()
if(TRIBUTARY_TSAN)
  target_compile_options(tributary_flags INTERFACE
    $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=thread -fno-omit-frame-pointer>)
  target_link_options(tributary_flags INTERFACE -fsanitize=thread)
endif()

# tributary_add_test(NAME SOURCES... LIBS...): one GoogleTest binary registered with ctest.
function(tributary_add_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE tributary_flags ${ARG_LIBS} tributary_testutil GTest::gtest GTest::gmock
    GTest::gtest_main)
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 600)
  endif()
  gtest_discover_tests(${name}
    WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
    PROPERTIES TIMEOUT ${ARG_TIMEOUT} LABELS "${ARG_LABELS}"
    DISCOVERY_TIMEOUT 60)
endfunction()

# tributary_add_library(NAME DEPS...): the library of one product folder. Sources are the *.cc files
# of the folder and its sub-folders (and cuda/*.cu when the CUDA backend is on); a folder with no
# sources yet is an INTERFACE library exposing its public header only. DEPS list exactly the
# libraries whose headers the folder includes (docs/architecture.md draws the graph).
function(tributary_add_library name)
  cmake_parse_arguments(ARG "" "" "DEPS" ${ARGN})
  file(GLOB_RECURSE _cc CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cc)
  set(_cu "")
  if(TRIBUTARY_HAVE_CUDA)
    file(GLOB_RECURSE _cu CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/cuda/*.cu)
  endif()
  if(_cc OR _cu)
    add_library(${name} STATIC ${_cc} ${_cu})
    target_link_libraries(${name} PUBLIC tributary_flags ${ARG_DEPS})
    if(_cu)
      set_target_properties(${name} PROPERTIES CUDA_SEPARABLE_COMPILATION OFF)
      target_link_libraries(${name} PUBLIC CUDA::cudart CUDA::cublas)
    endif()
  else()
    add_library(${name} INTERFACE)
    target_link_libraries(${name} INTERFACE tributary_flags ${ARG_DEPS})
  endif()
  if(TRIBUTARY_HAVE_CUDA)
    get_target_property(_type ${name} TYPE)
    if(_type STREQUAL "INTERFACE_LIBRARY")
      target_compile_definitions(${name} INTERFACE TRIBUTARY_HAVE_CUDA=1)
    else()
      target_compile_definitions(${name} PUBLIC TRIBUTARY_HAVE_CUDA=1)
    endif()
  endif()
endfunction()

# tributary_add_glob_test(NAME LIBS...): one test binary per tests/<folder>/ built from its *_test.cc.
function(tributary_add_glob_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "LIBS;LABELS" ${ARGN})
  file(GLOB _srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*_test.cc)
  if(NOT _srcs)
    return()
  endif()
  file(GLOB _helpers CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*_util.cc)
  tributary_add_test(${name} SOURCES ${_srcs} ${_helpers} LIBS ${ARG_LIBS} TIMEOUT ${ARG_TIMEOUT} LABELS ${ARG_LABELS})
endfunction()
