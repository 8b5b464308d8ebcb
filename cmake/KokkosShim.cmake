# Debian 12's libtrilinos-kokkos-dev ships a KokkosConfig.cmake whose include dir resolves to
# /usr/lib/include while the headers live in /usr/include/trilinos. When the user did not
# point us at another Kokkos (-DKokkos_ROOT=... or Kokkos_DIR), define Kokkos::kokkos for the
# Debian layout ourselves; otherwise use the selected Kokkos's own config.
if(TARGET Kokkos::kokkos)
  return()
endif()

set(_crackseg_use_debian_kokkos OFF)
if(NOT Kokkos_ROOT AND NOT DEFINED ENV{Kokkos_ROOT} AND NOT Kokkos_DIR)
  find_path(CRACKSEG_DEBIAN_KOKKOS_INCLUDE Kokkos_Core.hpp PATHS /usr/include/trilinos NO_DEFAULT_PATH)
  find_library(CRACKSEG_DEBIAN_KOKKOS_CORE trilinos_kokkoscore)
  if(CRACKSEG_DEBIAN_KOKKOS_INCLUDE AND CRACKSEG_DEBIAN_KOKKOS_CORE)
    set(_crackseg_use_debian_kokkos ON)
  endif()
endif()

if(_crackseg_use_debian_kokkos)
  add_library(Kokkos::kokkos INTERFACE IMPORTED GLOBAL)
  find_library(CRACKSEG_DEBIAN_KOKKOS_CONTAINERS trilinos_kokkoscontainers REQUIRED)
  # Debian's Kokkos headers trigger -Wextra noise; mark them SYSTEM.
  set_target_properties(Kokkos::kokkos PROPERTIES
    INTERFACE_SYSTEM_INCLUDE_DIRECTORIES "${CRACKSEG_DEBIAN_KOKKOS_INCLUDE}"
    INTERFACE_INCLUDE_DIRECTORIES "${CRACKSEG_DEBIAN_KOKKOS_INCLUDE}"
    INTERFACE_LINK_LIBRARIES "${CRACKSEG_DEBIAN_KOKKOS_CONTAINERS};${CRACKSEG_DEBIAN_KOKKOS_CORE};dl")
  set(Kokkos_FOUND TRUE)
  set(CRACKSEG_KOKKOS_DESC "Debian trilinos Kokkos (Serial) via cmake/KokkosShim.cmake")
  message(STATUS "Kokkos: Debian layout at ${CRACKSEG_DEBIAN_KOKKOS_INCLUDE} (shim)")
else()
  find_package(Kokkos REQUIRED)
  set(CRACKSEG_KOKKOS_DESC "Kokkos from ${Kokkos_DIR}")
  message(STATUS "Kokkos: ${Kokkos_DIR}")
endif()
