/* Fiber switch for x86-64 System V (see fiber.h). Saves the callee-saved registers, MXCSR and
 * the x87 control word on the current stack, stores the stack pointer, loads the other one and
 * restores the same set from it.
 *
 *   void irpk_fiber_switch_asm(void **save_sp, void *new_sp);
 *   irpk_fiber_entry_asm: first "return address" of a new fiber; calls r12(r13) and never
 *   returns (the C entry point switches away for good instead). */
#if defined(__x86_64__) && !defined(IRPK_FIBER_UCONTEXT)
    .text
    .globl irpk_fiber_switch_asm
    .hidden irpk_fiber_switch_asm
    .type irpk_fiber_switch_asm, @function
irpk_fiber_switch_asm:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size irpk_fiber_switch_asm, .-irpk_fiber_switch_asm

    .globl irpk_fiber_entry_asm
    .hidden irpk_fiber_entry_asm
    .type irpk_fiber_entry_asm, @function
irpk_fiber_entry_asm:
    movq %r13, %rdi
    callq *%r12
    ud2
    .size irpk_fiber_entry_asm, .-irpk_fiber_entry_asm
#endif
#if defined(__linux__) && defined(__ELF__)
    .section .note.GNU-stack,"",%progbits
#endif
