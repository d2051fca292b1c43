# cmake -DOUTPUT=FILE -DCOMMAND="prog;arg;..." -P output-to-file.cmake
# Runs COMMAND and writes its standard output to FILE, atomically; fails when COMMAND does.
execute_process(COMMAND ${COMMAND} OUTPUT_FILE ${OUTPUT}.tmp RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  file(REMOVE ${OUTPUT}.tmp)
  message(FATAL_ERROR "${COMMAND} failed: ${result}")
endif()
file(RENAME ${OUTPUT}.tmp ${OUTPUT})
