# OpenCVConfig.cmake lives in Debian's libopencv-dev metapackage, which pulls in all of
# OpenCV (GUI, video, contrib...). We need only core, imgproc and imgcodecs, so: use a real
# OpenCV config when one is installed, else find those three libraries ourselves.
find_package(OpenCV CONFIG QUIET COMPONENTS ${OpenCV_FIND_COMPONENTS})
if(OpenCV_FOUND)
  return()
endif()
find_path(OpenCV_INCLUDE_DIRS opencv2/core.hpp PATH_SUFFIXES opencv4)
set(OpenCV_LIBS)
set(_missing)
foreach(c ${OpenCV_FIND_COMPONENTS})
  find_library(OpenCV_${c}_LIBRARY opencv_${c})
  if(OpenCV_${c}_LIBRARY)
    if(NOT TARGET opencv_${c})
      add_library(opencv_${c} UNKNOWN IMPORTED)
      set_target_properties(opencv_${c} PROPERTIES IMPORTED_LOCATION "${OpenCV_${c}_LIBRARY}"
        INTERFACE_INCLUDE_DIRECTORIES "${OpenCV_INCLUDE_DIRS}")
    endif()
    list(APPEND OpenCV_LIBS opencv_${c})
  else()
    list(APPEND _missing opencv_${c})
  endif()
endforeach()
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(OpenCV REQUIRED_VARS OpenCV_INCLUDE_DIRS OpenCV_LIBS
  REASON_FAILURE_MESSAGE "missing ${_missing} - install libopencv-imgcodecs-dev libopencv-imgproc-dev")
