# Debian's libdnnl-dev (oneDNN 2.6) ships a dnnl-config.cmake that insists on OpenCL headers
# (its GPU runtime) although we only use the CPU engine. Use a oneDNN config only when the
# user names one (-Ddnnl_DIR=... for a cluster's own oneDNN); else locate header and library.
if(dnnl_DIR)
  find_package(dnnl CONFIG REQUIRED)
  set(DNNL_FOUND TRUE)
  return()
endif()
find_path(DNNL_INCLUDE_DIR oneapi/dnnl/dnnl.hpp)
find_library(DNNL_LIBRARY dnnl)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(DNNL REQUIRED_VARS DNNL_LIBRARY DNNL_INCLUDE_DIR)
if(DNNL_FOUND AND NOT TARGET DNNL::dnnl)
  add_library(DNNL::dnnl UNKNOWN IMPORTED)
  set_target_properties(DNNL::dnnl PROPERTIES
    IMPORTED_LOCATION "${DNNL_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${DNNL_INCLUDE_DIR}")
endif()
