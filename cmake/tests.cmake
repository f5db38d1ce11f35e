# Every spec file is one CTest test, run with busted inside the built coil
# (busted --lua=coil), so `ctest -j` spreads them over the cores and one
# failing file names itself.
find_program(BUSTED busted)
file(GLOB COIL_SPECS RELATIVE ${CMAKE_SOURCE_DIR} CONFIGURE_DEPENDS
     ${CMAKE_SOURCE_DIR}/spec/*_spec.lua)
set(COIL_TEST_ENV "COIL_BIN=$<TARGET_FILE:coil>")
if(COIL_SANITIZE)
  list(APPEND COIL_TEST_ENV "COIL_SANITIZED=1")
endif()
foreach(spec IN LISTS COIL_SPECS)
  get_filename_component(name ${spec} NAME_WE)
  add_test(NAME ${name}
           COMMAND ${BUSTED} --lua=$<TARGET_FILE:coil> -o plainTerminal ${spec}
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(${name} PROPERTIES ENVIRONMENT "${COIL_TEST_ENV}"
                       TIMEOUT 600)
endforeach()
