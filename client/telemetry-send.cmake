# telemetry-send: the command-line producer (telemetry-send.c, cli/value.c),
# included at the end of client/CMakeLists.txt. Linked statically against
# libtelemetry so the installed tool needs no library path of its own. The
# JSON parser uses the agent's growable buffer and UTF-8 check, --timestamp
# the agent's RFC 3339 parser.
add_executable(telemetry-send
  ${CMAKE_CURRENT_LIST_DIR}/telemetry-send.c ${CMAKE_CURRENT_LIST_DIR}/cli/value.c
  ${PROJECT_SOURCE_DIR}/agent/buf.c ${PROJECT_SOURCE_DIR}/agent/json.c
  ${PROJECT_SOURCE_DIR}/agent/timestamp.c)
target_include_directories(telemetry-send PRIVATE ${CMAKE_CURRENT_LIST_DIR}
  ${PROJECT_SOURCE_DIR}/agent)
target_link_libraries(telemetry-send PRIVATE m)
target_compile_definitions(telemetry-send PRIVATE TELEMETRY_SEND_VERSION="${PROJECT_VERSION}")
target_link_libraries(telemetry-send PRIVATE telemetry::telemetry_static)
install(TARGETS telemetry-send RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
