# Writes generated/crackseg/build_info.hpp at build time: git commit, dirty flag, compiler and
# library versions, so every result.json can say exactly what produced it.
set(CRACKSEG_GEN_DIR ${CMAKE_CURRENT_BINARY_DIR}/generated/crackseg)
file(MAKE_DIRECTORY ${CRACKSEG_GEN_DIR})
add_custom_target(crackseg_provenance
  COMMAND ${CMAKE_COMMAND}
    -DSRC=${CMAKE_CURRENT_SOURCE_DIR} -DOUT=${CRACKSEG_GEN_DIR}/build_info.hpp
    -DCOMPILER=${CMAKE_CXX_COMPILER_ID}-${CMAKE_CXX_COMPILER_VERSION}
    "-DVERSION=${PROJECT_VERSION}" "-DKOKKOS_DESC=${CRACKSEG_KOKKOS_DESC}"
    -DCUDA=${CRACKSEG_CUDA}
    -P ${CMAKE_CURRENT_SOURCE_DIR}/cmake/WriteBuildInfo.cmake
  VERBATIM
  BYPRODUCTS ${CRACKSEG_GEN_DIR}/build_info.hpp
  COMMENT "provenance: build_info.hpp")
