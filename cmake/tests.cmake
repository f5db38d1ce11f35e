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

# The C embedding API: each case in its own process (tests/runner.h).
find_package(Threads REQUIRED)
add_executable(embed_test tests/embed_test.c)
target_compile_options(embed_test PRIVATE ${COIL_WARNINGS})
target_link_libraries(embed_test PRIVATE coil_static Threads::Threads)
add_test(NAME embed_test COMMAND embed_test)
set_tests_properties(embed_test PROPERTIES TIMEOUT 300)

# Lua code at teardown (__gc at lua_close): limit and watchdog.
add_executable(teardown_test tests/teardown_test.c)
target_compile_options(teardown_test PRIVATE ${COIL_WARNINGS})
target_link_libraries(teardown_test PRIVATE coil_static Threads::Threads)
add_test(NAME teardown_test COMMAND teardown_test)
set_tests_properties(teardown_test PROPERTIES TIMEOUT 300)

# The Lua state's block pool (src/pool.c).
add_executable(pool_test tests/pool_test.c)
target_compile_options(pool_test PRIVATE ${COIL_WARNINGS})
target_link_libraries(pool_test PRIVATE coil_static)
add_test(NAME pool_test COMMAND pool_test)
set_tests_properties(pool_test PROPERTIES TIMEOUT 300)

add_executable(embed_cycle tests/embed_cycle.c)
target_compile_options(embed_cycle PRIVATE ${COIL_WARNINGS})
target_link_libraries(embed_cycle PRIVATE coil_static)
find_program(VALGRIND valgrind)
if(VALGRIND AND NOT COIL_SANITIZE)
  add_test(NAME embed_cycle
           COMMAND ${VALGRIND} --error-exitcode=1 --leak-check=full
                   --errors-for-leak-kinds=definite $<TARGET_FILE:embed_cycle> 100)
else()
  add_test(NAME embed_cycle COMMAND embed_cycle 100)
endif()
set_tests_properties(embed_cycle PROPERTIES TIMEOUT 600)

# coil_post from several threads at once (tests/post_test.c).
add_executable(post_test tests/post_test.c)
target_compile_options(post_test PRIVATE ${COIL_WARNINGS})
target_link_libraries(post_test PRIVATE coil_static Threads::Threads)
add_test(NAME post_test COMMAND post_test)
set_tests_properties(post_test PROPERTIES TIMEOUT 300)
