# telemetry-send: the command-line producer (telemetry-send.c, cli/value.c),
# included at the end of client/CMakeLists.txt. Linked statically against
# libtelemetry so the installed tool needs no library path of its own. The
# JSON parser uses proto's growable buffer and UTF-8 check, --timestamp
# proto's RFC 3339 parser.
add_executable(telemetry-send
  ${CMAKE_CURRENT_LIST_DIR}/telemetry-send.c ${CMAKE_CURRENT_LIST_DIR}/cli/value.c)
target_include_directories(telemetry-send PRIVATE ${CMAKE_CURRENT_LIST_DIR})
target_compile_definitions(telemetry-send PRIVATE TELEMETRY_SEND_VERSION="${PROJECT_VERSION}")
target_link_libraries(telemetry-send PRIVATE telemetry::telemetry_static proto)
install(TARGETS telemetry-send RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
