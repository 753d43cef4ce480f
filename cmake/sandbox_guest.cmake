# The guest that runs inside sandboxes (jails and containers), as opposed to the agentbox-guest
# target, which the guest's own suites and the daemon's test-double backend run on the host.
#
# In a normal build they are the same static binary. In a sanitizer build (AGENTBOX_SANITIZE)
# agentbox-guest is sanitized and therefore dynamic, which cannot run in a container image or a
# jail's root filesystem, and ASan's shadow memory alone exceeds a sandbox's memory limit. So the
# guest for sandboxes is built a second time, from the same source tree, in a sub-build without
# sanitizers (<build>/sandbox-guest, Release, static), while the daemon, the backends, the jail
# helper and every test stay sanitized. A sub-build rather than per-target flags because the
# guest's libraries (common, api, http, files) are shared with the daemon: compiling them twice in
# one tree would mean a second copy of each library target.
#
#   agentbox_sandbox_guest(<target> <MACRO>)
#       <target> gets -D<MACRO>="<path of the sandbox guest>" and is built after it.

set(AGENTBOX_PREBUILT_SANDBOX_GUEST "" CACHE FILEPATH
    "A static, unsanitized agentbox-guest from another build of this tree (e.g. build/release's) for sandboxes in a sanitizer build, instead of the sub-build")
if(AGENTBOX_SANITIZE AND AGENTBOX_PREBUILT_SANDBOX_GUEST)
  # scripts/test.sh passes the release build's guest when it built one first: the same source
  # tree, so building it a third time would only cost CI minutes.
  if(NOT EXISTS ${AGENTBOX_PREBUILT_SANDBOX_GUEST})
    message(FATAL_ERROR "AGENTBOX_PREBUILT_SANDBOX_GUEST: ${AGENTBOX_PREBUILT_SANDBOX_GUEST} does not exist")
  endif()
  add_custom_target(agentbox_sandbox_guest)
  set(AGENTBOX_SANDBOX_GUEST ${AGENTBOX_PREBUILT_SANDBOX_GUEST})
  set(AGENTBOX_SANDBOX_GUEST_TARGET agentbox_sandbox_guest)
elseif(AGENTBOX_SANITIZE)
  include(ExternalProject)
  set(_agentbox_sub ${PROJECT_BINARY_DIR}/sandbox-guest)
  set(_agentbox_sub_args
      -DCMAKE_BUILD_TYPE=Release
      -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER}
      -DAGENTBOX_SANITIZE=OFF
      -DAGENTBOX_STATIC_GUEST=ON
      -DAGENTBOX_BUILD_TESTS=OFF
      -DAGENTBOX_BUILD_BENCH=OFF)
  if(CMAKE_CXX_COMPILER_LAUNCHER)
    list(APPEND _agentbox_sub_args -DCMAKE_CXX_COMPILER_LAUNCHER=${CMAKE_CXX_COMPILER_LAUNCHER})
  endif()
  ExternalProject_Add(agentbox_sandbox_guest
    SOURCE_DIR ${PROJECT_SOURCE_DIR}
    BINARY_DIR ${_agentbox_sub}
    CMAKE_GENERATOR ${CMAKE_GENERATOR}
    CMAKE_ARGS ${_agentbox_sub_args}
    CMAKE_CACHE_ARGS -DCMAKE_PREFIX_PATH:STRING=${CMAKE_PREFIX_PATH}
    BUILD_COMMAND ${CMAKE_COMMAND} --build ${_agentbox_sub} --target agentbox-guest
    # The sub-build's own build system decides what changed; this step only runs it every time.
    BUILD_ALWAYS ON
    BUILD_BYPRODUCTS ${_agentbox_sub}/src/guest/agentbox-guest
    INSTALL_COMMAND "")
  set(AGENTBOX_SANDBOX_GUEST ${_agentbox_sub}/src/guest/agentbox-guest)
  set(AGENTBOX_SANDBOX_GUEST_TARGET agentbox_sandbox_guest)
else()
  set(AGENTBOX_SANDBOX_GUEST $<TARGET_FILE:agentbox-guest>)
  set(AGENTBOX_SANDBOX_GUEST_TARGET agentbox-guest)
endif()

function(agentbox_sandbox_guest target macro)
  target_compile_definitions(${target} PRIVATE ${macro}="${AGENTBOX_SANDBOX_GUEST}")
  add_dependencies(${target} ${AGENTBOX_SANDBOX_GUEST_TARGET})
endfunction()
