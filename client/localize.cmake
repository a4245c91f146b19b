# Make the hidden symbols of a static archive local: its members are linked
# into one relocatable object (ld -r), whose hidden symbols objcopy then
# turns local, and the archive is made again of that one object. Run as
#   cmake -DARCHIVE=lib.a -DAR=ar -DLD=ld -DOBJCOPY=objcopy -P localize.cmake
get_filename_component(dir ${ARCHIVE} DIRECTORY)
set(work ${dir}/localize.d)
file(REMOVE_RECURSE ${work})
file(MAKE_DIRECTORY ${work})
execute_process(COMMAND ${AR} x ${ARCHIVE} WORKING_DIRECTORY ${work} COMMAND_ERROR_IS_FATAL ANY)
file(GLOB members ${work}/*.o)
execute_process(COMMAND ${LD} -r -o ${work}/all.o ${members} COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND ${OBJCOPY} --localize-hidden ${work}/all.o COMMAND_ERROR_IS_FATAL ANY)
file(REMOVE ${ARCHIVE})
execute_process(COMMAND ${AR} rcs ${ARCHIVE} ${work}/all.o COMMAND_ERROR_IS_FATAL ANY)
file(REMOVE_RECURSE ${work})
